"""The FFT floor ("know the floor"): the time of the 2-D FFTs and random draws a step must do.

A pseudo-spectral solver step cannot be faster than the 2-D FFTs and random draws its equation
needs (`Solver.step_cost` counts them). `fft_floor` times that work (with the least glue that
keeps XLA from dropping or merging it), on arrays of the same shape, in the same `lax.scan`
structure; the "solver" group (`closurejax.benchmarks.solver`) divides a step's time by it, and
the "coupled" group times `make_fft_chain`s beside its rollouts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from closurejax.timing import time_fn

__all__ = ["fft_floor", "make_fft_chain"]


def _schedule(n_forward: int, n_inverse: int, stack: bool) -> list[tuple[bool, int]]:
    """(forward?, how many) calls: the transforms spread evenly, forwards first.

    With `stack`, each run of consecutive same-direction transforms becomes one call.
    """
    total = n_forward + n_inverse
    # Forward j sits at the start of its share of the sequence (Bresenham-style).
    forward_at = {j * total // n_forward for j in range(n_forward)} if n_forward else set()
    calls: list[tuple[bool, int]] = []
    for i in range(total):
        forward = i in forward_at
        if stack and calls and calls[-1][0] == forward:
            calls[-1] = (forward, calls[-1][1] + 1)
        else:
            calls.append((forward, 1))
    return calls


def make_fft_chain(
    shape: Sequence[int],
    n_forward: int,
    n_inverse: int,
    steps: int = 1,
    stack: bool = True,
    normals: int = 0,
) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """The jitted function that `fft_floor` times; see there.

    Returns `f(r, c) -> (r, c)` with `r` real `shape = [..., n, n]` and `c` its rfft2 layout
    `[..., n, n//2+1]` complex, running `steps` iterations of a `lax.scan`, each doing `n_forward`
    rfft2 and `n_inverse` irfft2 over the last two axes (runs of same-direction transforms as one
    call over a stacked axis `[..., k, n, n]` when `stack`) and drawing `normals` standard normals
    per field (`[..., normals]` from the iteration's key, JAX's default generator, as the solver
    draws its noise), averaged into a carried `[..., normals]` array as a transform's output is
    averaged into the carried field: every piece of work lands in memory once.
    """
    n = tuple(shape[-2:])
    calls = _schedule(n_forward, n_inverse, stack) if n_forward + n_inverse else []
    # Distinct input scales a_i = 1 + 1e-3·(i − mean), one per transform of an iteration.
    total = n_forward + n_inverse
    scales = [1.0 + 1e-3 * (i - (total - 1) / 2) for i in range(total)]
    call_scales, first = [], 0
    for _, k in calls:
        call_scales.append(scales[first : first + k])
        first += k
    key = jax.random.key(0)

    def scaled(x: jax.Array, a: list[float]) -> jax.Array:
        """a[0]·x, or the a_j·x stacked on axis −3 for several scales."""
        if len(a) == 1:
            return a[0] * x
        return jnp.asarray(a, x.real.dtype)[:, None, None] * x[..., None, :, :]

    def merged(y: jax.Array) -> jax.Array:
        """Mean over the stacked axis −3, as a sum of slices: XLA:CPU lowers `jnp.mean` over a
        middle axis to a reduction ≈ 25× slower than this elementwise fusion."""
        if y.ndim == len(shape):
            return y
        k = y.shape[-3]
        return sum(y[..., j, :, :] for j in range(k)) / k

    def one_step(carry: tuple[jax.Array, ...], i: jax.Array) -> tuple[Any, None]:
        r, c, d = carry
        for (forward, _), a in zip(calls, call_scales, strict=True):
            # Transform i reads a_i × the latest value of one array and is averaged into the
            # other. The distinct a_i keep any two transforms from reading the same value (no
            # CSE; a sign flip would not do: XLA folds −(−c) to c), every output reaches the
            # result (no DCE), and, since irfft2 ∘ rfft2 = id and the a_i average to 1, the
            # values stay O(1) over thousands of iterations. Transforms of one run read the same
            # array and write the other, so they are independent and may share a call.
            if forward:
                c = 0.5 * (c + merged(jnp.fft.rfft2(scaled(r, a), axes=(-2, -1))))
            else:
                r = 0.5 * (r + merged(jnp.fft.irfft2(scaled(c, a), s=n, axes=(-2, -1))))
        if normals:
            d = 0.5 * (d + jax.random.normal(jax.random.fold_in(key, i), d.shape, d.dtype))
        return (r, c, d), None

    def chain(r: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
        d = jnp.zeros((*shape[:-2], normals), r.dtype)
        (r, c, d), _ = lax.scan(one_step, (r, c, d), jnp.arange(steps))
        if normals:  # the draws reach the result (no DCE)
            r = r + 1e-9 * jnp.sum(d, axis=-1)[..., None, None]
        return r, c

    return jax.jit(chain)


def fft_floor(
    shape: Sequence[int],
    count: int | None = None,
    dtype: Any = jnp.float32,
    *,
    n_forward: int | None = None,
    n_inverse: int | None = None,
    normals: int = 0,
    steps: int = 1,
    stack: bool = True,
    warmup: int = 1,
    repeats: int = 5,
    seed: int = 0,
) -> float:
    """Median seconds of `steps` × (`count` 2-D real FFTs + `normals` draws) on `[..., n, n]`
    arrays: a step's floor.

    What it measures: one jitted call running a `lax.scan` of `steps` iterations, each doing
    `n_forward` `rfft2` (`[..., n, n]` real → `[..., n, n//2+1]` complex) and `n_inverse`
    `irfft2` (back), all over the last two axes of arrays of `shape` (leading axes are batch:
    the same batching as a vmapped solver step), interleaved evenly, and drawing `normals`
    standard normal numbers per field; by default half the `count` transforms are forward (the
    extra one when `count` is odd). With `stack` (the default), each run of consecutive
    same-direction transforms is done as one batched call over a stacked axis, as an efficient
    step does (the solver stacks u, v, ∂ω/∂x, ∂ω/∂y into one irfft2), so the floor is the
    cheapest arrangement of those transforms.

    To keep XLA from merging identical transforms or dropping unused ones, each transform reads
    the latest state scaled by its own constant and its output is averaged into the carried
    state (the draws are averaged into a carried array of their own: a drawn number is stored at
    least once, as a solver stores the noise it adds); so besides the FFTs and draws the time
    includes a fused elementwise scale and average per call (memory-bound, a pass or two over the
    arrays) and the loop overhead, which a solver step pays as well (it forms spectral
    derivatives and sums terms the same way). Whatever else a pseudo-spectral step that does
    this work computes can only add to this time.

    Args:
      shape: real array shape `[..., n, n]`.
      count: transforms per scan iteration (n_forward + n_inverse); may be omitted when both of
        those are given.
      dtype: real dtype (float32 → complex64 transforms; float64 needs jax_enable_x64).
      n_forward, n_inverse: forward/inverse transforms per iteration (override the even split).
      normals: standard normals drawn per field and iteration (may be the only work: no
        transforms then).
      steps: scan iterations per timed call (use the solver benchmark's step count).
      stack: do each run of same-direction transforms as one call (False: one call each).
      warmup, repeats, seed: timing repetitions (see `time_fn`) and the random input's seed.
    """
    if len(shape) < 2:
        raise ValueError(f"fft_floor shape={tuple(shape)} needs at least two axes [..., n, n]")
    if n_forward is None and n_inverse is None:
        if count is None:
            raise ValueError("fft_floor needs count or n_forward and n_inverse")
        n_forward, n_inverse = (count + 1) // 2, count // 2
    elif n_forward is None:  # the rest of count, or none
        n_forward = 0 if count is None else count - n_inverse
    elif n_inverse is None:
        n_inverse = 0 if count is None else count - n_forward
    if count is not None and n_forward + n_inverse != count:
        raise ValueError(
            f"fft_floor n_forward={n_forward} + n_inverse={n_inverse} must equal count={count}"
        )
    if isinstance(normals, bool) or not isinstance(normals, int) or normals < 0:
        raise ValueError(f"fft_floor normals={normals!r} must be an int ≥ 0")
    if n_forward < 0 or n_inverse < 0 or n_forward + n_inverse + normals < 1:
        raise ValueError(
            f"fft_floor n_forward={n_forward}, n_inverse={n_inverse} and normals={normals} must "
            "be ≥ 0 with a positive sum"
        )
    if steps < 1:
        raise ValueError(f"fft_floor steps={steps} must be ≥ 1")
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"fft_floor dtype={dtype} must be a real floating dtype")
    r = jax.random.normal(jax.random.key(seed), tuple(shape), dtype)
    c = jnp.fft.rfft2(r, axes=(-2, -1))
    chain = make_fft_chain(shape, n_forward, n_inverse, steps, stack, normals)
    return time_fn(chain, r, c, warmup=warmup, repeats=repeats)["median"]
