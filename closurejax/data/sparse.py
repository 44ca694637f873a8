"""Sparse measurements of a closure field on a uniform lattice, and their full-grid encodings.

Paper A (arXiv 2408.02965, the conditioning) conditions the diffusion model on the true closure
measured at every s-th grid point of the 64^2 field (s = 4: a 16 x 16 lattice, 6.25 % of the
points), encoded back onto the full grid in one of two ways:

* ``"interpolated"`` — periodic bicubic interpolation of the lattice values (`interpolate`);
* ``"smoothed"`` — zero-fill to the full grid, a periodic box filter (7 x 7 on 64^2), rescale
  (`smoothed`).

Fields are real ``[..., n, n]`` arrays on the periodic square with grid points ``x_i = i / n``;
the lattice holds the points ``[::s, ::s]``, i.e. ``[..., n // s, n // s]``. Both encodings are
linear and separable, ``out = M c M^T`` for a static ``[n, n // s]`` matrix ``M`` built once per
``(n, s)`` with numpy, so every function is a pure jax.numpy function over the last two axes:
leading (batch, ensemble) axes pass through, and each can be ``jax.jit``-compiled with `stride`,
`kernel_size` and `encoding` static. The matrix products use ``Precision.HIGHEST`` so that the
interpolation is exact at lattice points on accelerators too.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ENCODINGS",
    "KEYS_A",
    "lattice",
    "lattice_mask",
    "interpolate",
    "smoothed",
    "encode",
    "keys_kernel",
]

ENCODINGS = ("interpolated", "smoothed")
KEYS_A = -0.5  # Keys (1981) cubic convolution parameter: third-order accurate, = Catmull-Rom


def _check_stride(n: int, stride: int) -> None:
    if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    if n % stride != 0:
        raise ValueError(f"grid size n = {n} is not a multiple of stride = {stride}")


def _check_square(x: jax.Array, what: str) -> int:
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{what} must be [..., n, n] with square last two axes, got {x.shape}")
    return int(x.shape[-1])


def lattice_mask(n: int, stride: int) -> jax.Array:
    """Boolean ``[n, n]``, True at the lattice points ``[::stride, ::stride]``."""
    _check_stride(n, stride)
    on = np.arange(n) % stride == 0
    return jnp.asarray(on[:, None] & on[None, :])


def lattice(field: jax.Array, stride: int) -> jax.Array:
    """Values of `field` ``[..., n, n]`` at the lattice points ``[::stride, ::stride]``.

    Returns ``[..., n // stride, n // stride]``; raises `ValueError` unless stride divides n.
    """
    field = jnp.asarray(field)
    _check_stride(_check_square(field, "field"), stride)
    return field[..., ::stride, ::stride]


def keys_kernel(x: np.ndarray, a: float = KEYS_A) -> np.ndarray:
    """Keys' cubic convolution kernel W(x): 1 at 0, 0 at the other integers, support |x| < 2.

    ``W = (a+2)|x|^3 - (a+3)|x|^2 + 1`` for ``|x| <= 1``, ``a|x|^3 - 5a|x|^2 + 8a|x| - 4a`` for
    ``1 < |x| < 2`` (R. Keys, IEEE Trans. ASSP 29(6), 1981).
    """
    x = np.abs(np.asarray(x, dtype=np.float64))
    inner = ((a + 2) * x - (a + 3)) * x * x + 1
    outer = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, inner, np.where(x < 2, outer, 0.0))


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(m: int, stride: int) -> np.ndarray:
    """``[m * stride, m]``: row i holds the periodic cubic-convolution weights at ``i / stride``."""
    n = m * stride
    pos = np.arange(n) / stride  # position of grid point i in lattice units
    base = np.arange(n) // stride
    matrix = np.zeros((n, m))
    rows = np.arange(n)
    for offset in (-1, 0, 1, 2):  # the four taps of the kernel's support
        node = base + offset
        np.add.at(matrix, (rows, node % m), keys_kernel(pos - node))
    matrix.setflags(write=False)
    return matrix


@functools.lru_cache(maxsize=64)
def _smoothing_matrix(m: int, stride: int, kernel_size: int) -> np.ndarray:
    """``[m * stride, m]``: zero-fill then a periodic box of `kernel_size`, scaled by ``stride``.

    Entry ``(i, a)`` is ``stride / kernel_size`` if the periodic distance from grid point i to
    lattice point ``a * stride`` is at most ``(kernel_size - 1) / 2``, else 0. Every column sums
    to ``stride``, so the 2-D operator ``M c M^T`` preserves the mean exactly (see `smoothed`).
    """
    n = m * stride
    half = (kernel_size - 1) // 2
    dist = np.abs(np.arange(n)[:, None] - stride * np.arange(m)[None, :])
    dist = np.minimum(dist, n - dist)
    matrix = np.where(dist <= half, stride / kernel_size, 0.0)
    matrix.setflags(write=False)
    return matrix


def _apply_separable(matrix: np.ndarray, values: jax.Array) -> jax.Array:
    """``M @ values @ M^T`` on the last two axes: ``[n, m]``, ``[..., m, m]`` -> ``[..., n, n]``."""
    dtype = values.dtype if jnp.issubdtype(values.dtype, jnp.floating) else jnp.float32
    values = values.astype(dtype)
    mat = jnp.asarray(matrix, dtype=dtype)
    return jnp.einsum("ia,...ab,jb->...ij", mat, values, mat, precision=jax.lax.Precision.HIGHEST)


def interpolate(lattice_values: jax.Array, stride: int) -> jax.Array:
    """Periodic bicubic interpolation of lattice values to the full grid.

    Args:
      lattice_values: ``[..., m, m]``, the values at the points ``[::stride, ::stride]``.
      stride: lattice spacing s in grid points.

    Returns:
      ``[..., m * s, m * s]``: the separable cubic convolution with Keys' kernel (a = -0.5)
      on the periodically wrapped lattice. It equals the lattice values at the lattice points,
      reproduces constants exactly and polynomials of degree <= 2 away from the wrap (its error
      on smooth fields is O(h^3), h the lattice spacing). Paper A's "interpolated" encoding.
    """
    lattice_values = jnp.asarray(lattice_values)
    m = _check_square(lattice_values, "lattice_values")
    _check_stride(m * stride, stride)
    return _apply_separable(_interpolation_matrix(m, int(stride)), lattice_values)


def smoothed(lattice_values: jax.Array, stride: int, kernel_size: int = 7) -> jax.Array:
    """Zero-fill + periodic box filter + rescale (paper A's "smoothed"/conv encoding).

    The lattice values are placed at the points ``[::stride, ::stride]`` of a zero ``[n, n]``
    grid (``n = m * stride``), averaged over the periodic ``kernel_size x kernel_size`` box
    around each grid point (paper A: 7 x 7 on 64^2), and multiplied by ``stride**2``. The
    zero-filled field carries only ``1 / stride**2`` of the points, so its mean is
    ``mean(lattice_values) / stride**2``; the averaging preserves the mean; the global factor
    ``stride**2`` therefore makes the output's mean equal the lattice mean exactly. (The output
    is not constant for a constant input: a box holds 1, 2 or 4 lattice points for s = 4, k = 7.)

    Args:
      lattice_values: ``[..., m, m]``.
      stride: lattice spacing s.
      kernel_size: odd box width in grid points, ``1 <= kernel_size <= n``.

    Returns:
      ``[..., n, n]``.
    """
    lattice_values = jnp.asarray(lattice_values)
    m = _check_square(lattice_values, "lattice_values")
    n = m * stride
    _check_stride(n, stride)
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int | np.integer)
        or kernel_size < 1
        or kernel_size % 2 == 0
        or kernel_size > n
    ):
        raise ValueError(f"kernel_size must be an odd int in [1, n = {n}], got {kernel_size!r}")
    return _apply_separable(_smoothing_matrix(m, int(stride), int(kernel_size)), lattice_values)


def encode(field: jax.Array, stride: int, encoding: str, kernel_size: int = 7) -> jax.Array:
    """Measures `field` ``[..., n, n]`` on the stride-s lattice and encodes it to ``[..., n, n]``.

    `encoding` is ``"interpolated"`` (`interpolate`) or ``"smoothed"`` (`smoothed`, using
    `kernel_size`).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown sparse encoding {encoding!r}; allowed: {ENCODINGS}")
    values = lattice(field, stride)
    if encoding == "interpolated":
        return interpolate(values, stride)
    return smoothed(values, stride, kernel_size)
