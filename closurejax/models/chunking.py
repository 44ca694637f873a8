"""Batch chunking: run a batched network on cache-sized slices of its batch, in one XLA loop.

An FNO forward at paper B's P-CDM size (``[100, 64, 64]``, width 40) is bound by memory traffic
on a CPU, not by its FLOPs: every layer makes several elementwise passes (bias, GELU, the sum
of the spectral and 1x1 paths) over ``[40, 100, 64, 64]`` activations (65 MB each), which stream
through DRAM at a few GB/s. Run on slices of ``k`` samples inside a ``lax.map`` loop, the same
passes touch ``k``-sample activations that stay in the L2/L3 cache. Measured on the 2-core
development CPU (EPYC, 2 MiB L2 per core, 32 MiB L3), P-CDM forward at batch 100:

    k        all (one call)   1      2      4      5      10
    seconds  0.61             0.60   0.47   0.39   0.41   0.47

and for paper A's model (width 20, 64², batch 96) 0.48 s unchunked, 0.28 s at k = 4 and 0.29 s at
k = 8; for the P-CDM at 128² (batch 20) 0.51 s unchunked, 0.38 s at k = 1. The best slices keep one
``[width, k, n, n]`` float32 activation between about 1 and 3 MiB, which :func:`auto_chunk`
encodes. On accelerators (GPU/TPU) large batches are what the hardware wants, so ``"auto"``
chunks only on the CPU backend (and only with one device, see :func:`auto_chunk`).

Under ``jax.grad`` the loop becomes a scan whose backward pass runs slice by slice too. Its body is
rematerialised (``jax.checkpoint``): the backward pass recomputes each slice's forward from the
slice's inputs instead of reading activations that the forward loop stored for every slice.
Without it, the forward scan writes every intermediate of every slice into stacked
``[slices, ...]`` buffers (for paper A's model at batch 32, 64², the head's 128-channel layer alone
is 67 MB) that the backward scan reads back, and the step is bound by that memory traffic.
One Adam step of paper A's model (ω + sparse, width 20, 64², slices of 8), median of 5 alternating
rounds in one process (``closurejax.benchmarks.score.train_step_records``, the benchmark rows
``score/train_step/b200/seconds`` and ``no_remat_seconds``), on a 2-core AMD EPYC without
AVX-512 (512 KiB L2 per core, 32 MiB L3), idle:

    batch             32       200
    stored slices     2.51 s   13.4 s
    rematerialised    1.97 s   11.2 s

and 1.2 s against 2.2 s at batch 32 on a 2-core EPYC with AVX-512 and 2 MiB L2 per core (shared
with other jobs). The gradients are the same (rematerialisation recomputes the same operations;
tested); a forward pass without ``jax.grad`` (sampling, prediction) is unchanged.

Chunking changes no result beyond float rounding (the matmuls see other shapes): the slices are
independent because every layer of the networks is per-sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

__all__ = [
    "CACHE_BYTES",
    "ChunkSetting",
    "auto_chunk",
    "check_chunk",
    "resolve_chunk",
    "map_batch",
    "fold_vmap",
]

CACHE_BYTES = 3 * 2**20
"""Largest float32 activation ``[channels, k, n, n]`` of one slice (:func:`auto_chunk`)."""

ChunkSetting = int | str | None
"""``"auto"``, a positive slice size, or ``None`` / ``0`` (no chunking)."""


def check_chunk(setting: Any, name: str = "batch_chunk") -> ChunkSetting:
    """Validate a chunk setting; return it (``0`` becomes ``None``).

    Raises:
        ValueError: unless ``setting`` is ``"auto"``, ``None`` or an int ``>= 0``.
    """
    if setting is None or setting == "auto":
        return setting
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ValueError(
            f"{name}={setting!r} is invalid; allowed: 'auto', None or 0 (no chunking), or a "
            "positive int (samples per slice)"
        )
    return setting or None


def auto_chunk(bytes_per_sample: int, backend: str | None = None) -> int | None:
    """Slice size for activations of ``bytes_per_sample`` bytes per sample (largest layer).

    The largest power of two ``k`` with ``k * bytes_per_sample <= CACHE_BYTES`` (at least 1) on
    a single CPU device; ``None`` (no chunking) on any other backend, and with several devices:
    a batch sharded over devices would have its slices moved between them.

    Args:
        bytes_per_sample: bytes of one sample's activation, e.g. ``4 * width * n * n``.
        backend: ``jax.default_backend()`` when ``None``.
    """
    if (backend or jax.default_backend()) != "cpu" or jax.device_count() > 1:
        return None
    if bytes_per_sample <= 0:
        raise ValueError(f"bytes_per_sample must be positive, got {bytes_per_sample}")
    ratio = CACHE_BYTES / bytes_per_sample
    return 1 if ratio < 2 else 2 ** int(math.floor(math.log2(ratio)))


def resolve_chunk(setting: ChunkSetting, bytes_per_sample: int) -> int | None:
    """A validated setting as a slice size (``"auto"`` via :func:`auto_chunk`) or ``None``."""
    setting = check_chunk(setting)
    if setting == "auto":
        return auto_chunk(bytes_per_sample)
    return setting


def map_batch(fn: Callable[..., Any], chunk: int | None, *args: Any, remat: bool = True) -> Any:
    """``fn(*args)`` computed on slices of ``chunk`` samples of the leading (batch) axis.

    Args:
        fn: a function of batched pytrees returning a batched pytree; it must treat samples
            independently (then the result equals ``fn(*args)`` up to float rounding).
        chunk: samples per slice; ``None`` or a chunk not smaller than the batch calls ``fn``
            once on everything.
        *args: pytrees whose leaves all have the same leading batch size ``B``.
        remat: rematerialise each slice in the backward pass (``jax.checkpoint`` on the loop
            body; see the module docstring). No effect without differentiation.

    Returns:
        The pytree ``fn(*args)`` with leading axis ``B``: ``B // chunk`` slices run in one
        ``lax.map`` loop, a remainder of ``B % chunk`` samples in one further call.
    """
    leaves = jax.tree.leaves(args)
    if not leaves:
        raise ValueError("map_batch needs at least one array argument")
    batch = leaves[0].shape[0] if jnp.ndim(leaves[0]) else None
    if batch is None or any(jnp.ndim(v) == 0 or v.shape[0] != batch for v in leaves):
        shapes = [tuple(jnp.shape(v)) for v in leaves]
        raise ValueError(f"map_batch: every argument needs one leading batch axis, got {shapes}")
    if chunk is None or chunk >= batch:
        return fn(*args)
    full = batch // chunk * chunk

    def slices(v: jax.Array) -> jax.Array:
        return v[:full].reshape(batch // chunk, chunk, *v.shape[1:])

    def body(a: tuple[Any, ...]) -> Any:
        return fn(*a)

    out = lax.map(jax.checkpoint(body) if remat else body, jax.tree.map(slices, args))
    out = jax.tree.map(lambda v: v.reshape(full, *v.shape[2:]), out)
    if full == batch:
        return out
    rest = fn(*jax.tree.map(lambda v: v[full:], args))
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)


def fold_vmap(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(params, *batched)`` whose ``vmap`` folds the mapped axis into the batch axis.

    Under ``jax.vmap`` over the batched arguments — e.g. the members of an online ensemble, each
    calling the network on a batch of one — the wrapped function runs ``fn`` ONCE on the merged
    batch ``[V * B, ...]`` (arguments that are not mapped are broadcast first) instead of letting
    vmap add an axis to every operation inside ``fn``, so the network keeps its own batch layout
    and its batch slices (:func:`map_batch`). The result is the same as plain vmap because ``fn``
    treats samples independently. If ``params`` themselves are mapped (an ensemble of weights),
    it falls back to plain ``jax.vmap(fn)``.

    For inference only: ``jax.custom_batching.custom_vmap`` functions support forward-mode but
    not reverse-mode differentiation, so training losses call ``fn`` directly.

    Args:
        fn: ``fn(params, *batched) -> pytree``; every leaf of ``batched`` and of the output has
            the leading batch axis ``B``, and samples are independent.

    Returns:
        A function with the signature of ``fn``.
    """

    @custom_vmap
    def folded(params: Any, *batched: Any) -> Any:
        return fn(params, *batched)

    @folded.def_vmap
    def rule(axis_size: int, in_batched: Any, params: Any, *batched: Any) -> tuple[Any, Any]:
        if any(jax.tree.leaves(in_batched[0])):  # mapped weights: no folding
            in_axes = jax.tree.map(lambda mapped: 0 if mapped else None, tuple(in_batched))
            out = jax.vmap(fn, in_axes=in_axes)(params, *batched)
            return out, jax.tree.map(lambda _: True, out)

        def merge(value: jax.Array, mapped: bool) -> jax.Array:
            if not mapped:
                value = jnp.broadcast_to(value, (axis_size, *jnp.shape(value)))
            return value.reshape(axis_size * value.shape[1], *value.shape[2:])

        merged = jax.tree.map(merge, tuple(batched), tuple(in_batched[1:]))
        out = folded(params, *merged)
        out = jax.tree.map(lambda v: v.reshape(axis_size, -1, *v.shape[1:]), out)
        return out, jax.tree.map(lambda _: True, out)

    return folded
