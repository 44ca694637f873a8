"""FLOP counts of the FNO score network, and the machine's dense matmul rate.

design.md ("Cost model") asks every benchmark to compare a measured time with its floor. The
floor of a network forward is ``FLOPs / matmul rate``: this module counts the dense FLOPs of
:class:`closurejax.models.fno.ConditionalFNO` (and :class:`~closurejax.models.fno.DeterministicFNO`)
exactly as the code computes them, and measures the rate with one large jitted matmul.

Conventions:

* a real multiply-add is 2 FLOPs, so a dense layer ``rows x in -> out`` costs ``2 rows in out``;
  a complex multiply-add is 8 real FLOPs (4 multiplies, 4 adds);
* ``"dft"`` spectral convolutions are counted matmul by matmul, as in
  :func:`closurejax.models.fno.spectral_conv_dft` (the forward along ``y`` acts on real data, so
  ``2 (c b nx) ny (2m)``; along ``x`` on the ``m`` kept columns ``2 (c b 2m) nx (4m)``; the
  per-mode complex mixing ``8 b (2m m) c_in c_out``; the inverse along ``x``
  ``2 (o b 2m) (2m) (2 nx)`` and along ``y`` ``2 (o b nx) (2m) ny``);
* ``"fft"`` spectral convolutions count the same mode mixing plus the conventional estimate
  ``2.5 N log2 N`` for a real 2-D FFT of ``N = nx ny`` points (half of ``5 N log2 N`` for a
  complex FFT), one ``rfft2`` per input channel and one ``irfft2`` per output channel;
* elementwise work (GELU, SiLU, bias and residual additions, the Gaussian Fourier features) is
  not counted: it is memory-bound, and its cost shows up as the gap between the measured time
  and the FLOP floor.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.models.fno import ConditionalFNO, DeterministicFNO, resolve_spectral_method

__all__ = [
    "dense_flops",
    "fft2_flops",
    "spectral_conv_flops",
    "fno_flops_breakdown",
    "fno_forward_flops",
    "matmul_rate",
]

_PARTS: tuple[str, ...] = ("encode", "denoise", "call")


def _positive(name: str, value: Any) -> int:
    """Return ``value`` as an int, raising ``ValueError`` unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def dense_flops(rows: int, in_features: int, out_features: int) -> int:
    """FLOPs of ``[rows, in] @ [in, out]``: ``2 rows in out`` (bias additions not counted)."""
    return 2 * rows * in_features * out_features


def fft2_flops(nx: int, ny: int) -> int:
    """Conventional FLOP estimate of one real 2-D FFT (``rfft2`` or ``irfft2``) of ``nx x ny``.

    ``2.5 N log2 N`` with ``N = nx ny``, rounded to an integer.
    """
    size = nx * ny
    return round(2.5 * size * math.log2(size))


def spectral_conv_flops(
    batch: int,
    n: int,
    in_channels: int,
    out_channels: int,
    modes: int,
    method: str,
) -> int:
    """FLOPs of one :class:`~closurejax.models.fno.SpectralConv2d` on ``[batch, n, n, in]``.

    Args:
        batch: batch size.
        n: grid size (``n x n``).
        in_channels: input channels ``c``.
        out_channels: output channels ``o``.
        modes: kept modes per direction ``m``.
        method: ``"dft"``, ``"fft"`` or ``"auto"`` (resolved for the current backend).

    Returns:
        The FLOP count described in the module docstring.
    """
    b, c, o, m = batch, in_channels, out_channels, modes
    mixing = 8 * b * (2 * m * m) * c * o
    method = resolve_spectral_method(method)
    if method == "fft":
        return mixing + (c + o) * b * fft2_flops(n, n)
    forward = 2 * (c * b * n) * n * (2 * m) + 2 * (c * b * 2 * m) * n * (4 * m)
    inverse = 2 * (o * b * 2 * m) * (2 * m) * (2 * n) + 2 * (o * b * n) * (2 * m) * n
    return forward + mixing + inverse


def _branch_flops(width: int, modes: int, depth: int, n: int, batch: int, method: str) -> int:
    """FLOPs of one :class:`~closurejax.models.fno.FNOBranch` without embedding biases."""
    pixels = batch * n * n
    lift = dense_flops(pixels, 3, width)
    layer = spectral_conv_flops(batch, n, width, width, modes, method)
    layer += dense_flops(pixels, width, width)
    return lift + depth * layer


def _head_flops(model: ConditionalFNO | DeterministicFNO, in_channels: int, pixels: int) -> int:
    """FLOPs of the :class:`~closurejax.models.fno.FusionHead` on ``pixels`` points."""
    fusion = 2 * model.width if model.fusion_width is None else model.fusion_width
    sizes = (in_channels, fusion, model.width, model.width, model.mlp_width, 1)
    return sum(dense_flops(pixels, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def fno_flops_breakdown(
    model: ConditionalFNO | DeterministicFNO, n: int, batch: int, method: str | None = None
) -> dict[str, int]:
    """Dense FLOPs of one forward pass, split as the sampler uses it.

    Args:
        model: a :class:`ConditionalFNO` or :class:`DeterministicFNO` (its hyper-parameters are
            read; no parameters are needed).
        n: grid size.
        batch: batch size.
        method: ``"dft" | "fft" | "auto"``; ``None`` uses ``model.spectral_method``.

    Returns:
        ``{"encode": ..., "denoise": ..., "call": ...}``: the condition branches; the noise
        embedding, target branch and head; and their sum (one ``__call__``). For a
        :class:`DeterministicFNO`, ``"denoise"`` is its head alone.

    Raises:
        ValueError: for a non-positive ``n`` or ``batch``, an unknown method, a grid smaller than
            ``2 * modes``, or an unsupported model type.
    """
    n, batch = _positive("n", n), _positive("batch", batch)
    if not isinstance(model, ConditionalFNO | DeterministicFNO):
        raise ValueError(f"model must be a ConditionalFNO or DeterministicFNO, got {type(model)}")
    if n < 2 * model.modes:
        raise ValueError(f"grid size {n} is smaller than 2 * modes = {2 * model.modes}")
    method = resolve_spectral_method(model.spectral_method if method is None else method)
    k, width, pixels = len(model.condition_names), model.width, batch * n * n
    branch = _branch_flops(width, model.modes, model.depth, n, batch, method)
    encode = k * branch
    if isinstance(model, DeterministicFNO):
        denoise = _head_flops(model, k * width, pixels)
    else:
        embedding = dense_flops(batch, model.embed_dim, model.embed_dim)
        embedding += model.depth * dense_flops(batch, model.embed_dim, width)
        denoise = embedding + branch + _head_flops(model, (k + 1) * width, pixels)
    return {"encode": encode, "denoise": denoise, "call": encode + denoise}


def fno_forward_flops(
    model: ConditionalFNO | DeterministicFNO,
    n: int,
    batch: int,
    method: str | None = None,
    part: str = "call",
) -> int:
    """Dense FLOPs of ``part`` (``"encode"``, ``"denoise"`` or ``"call"``) of one forward pass.

    See :func:`fno_flops_breakdown` for the arguments.
    """
    if part not in _PARTS:
        raise ValueError(f"part must be one of {_PARTS}, got {part!r}")
    return fno_flops_breakdown(model, n, batch, method)[part]


def matmul_rate(dtype: Any = jnp.float32, size: int = 2048, repeats: int = 5) -> float:
    """Measured dense matmul rate of the default device, in FLOP/s.

    Times a jitted ``[size, size] @ [size, size]`` (``2 size^3`` FLOPs) ``repeats`` times after a
    compile-and-warm-up call and returns ``2 size^3 / median time``.

    Args:
        dtype: element type of the matrices.
        size: matrix size (2048 by default; smaller for quick checks).
        repeats: timed runs (the median is used).

    Returns:
        FLOP/s.
    """
    size, repeats = _positive("size", size), _positive("repeats", repeats)
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size)).astype(dtype)
    b = jax.random.normal(key_b, (size, size)).astype(dtype)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / float(np.median(times))
