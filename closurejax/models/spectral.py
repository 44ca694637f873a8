"""Spectral convolution as pure functions on the channel-outer layout: the FNO's Fourier layer
(Li et al. 2021, "Fourier neural operator for parametric PDEs"; the score networks of arXiv
2408.02965 and arXiv 2506.20771), in two equivalent paths.

* ``"fft"``: ``rfft2`` -> multiply the kept modes -> ``irfft2``. It transforms every mode and
  then discards all but ``2 m x m`` of them.
* ``"dft"``: a truncated DFT over the kept modes only, as dense real matmuls on a channel-outer
  ``[channels, batch, x, y]`` layout reshaped to 2-D: ``O(n^2 m)`` per channel instead of
  ``O(n^2 log n)`` — about as many FLOPs as the FFT pair at ``n = 64, m = 6``, but matmuls run
  near the machine's peak where FFTs do not (a spectral convolution should cost what its kept
  modes cost).
* ``"auto"`` (`resolve_spectral_method`) picks ``"dft"`` when JAX's default backend is the CPU
  and ``"fft"`` otherwise.

The kept modes are the standard FNO corners (`kept_wavenumbers`): ``kx`` in ``{0..m-1}`` and
``{n-m..n-1}``, ``ky`` in ``{0..m-1}``, so a grid needs ``n >= 2 m`` points per axis
(`check_grid`). The layers built on these functions are in :mod:`closurejax.models.fno`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "SPECTRAL_METHODS",
    "Precision",
    "check_grid",
    "check_method",
    "dft_matrices",
    "grid_coordinates",
    "kept_wavenumbers",
    "resolve_spectral_method",
    "spectral_conv_dft",
    "spectral_conv_fft",
]

SPECTRAL_METHODS: tuple[str, ...] = ("auto", "fft", "dft")
"""Accepted values of ``method`` / ``spectral_method``."""

Precision = lax.Precision | str | None


def check_method(method: str) -> None:
    """Raise ``ValueError`` unless ``method`` is one of :data:`SPECTRAL_METHODS`."""
    if method not in SPECTRAL_METHODS:
        raise ValueError(f"spectral method must be one of {SPECTRAL_METHODS}, got {method!r}")


def check_grid(nx: int, ny: int, modes: int, where: str) -> None:
    """Raise ``ValueError`` unless both grid sizes are at least ``2 * modes``."""
    if nx < 2 * modes or ny < 2 * modes:
        raise ValueError(
            f"{where}: grid size {nx}x{ny} is too small for modes={modes}; every grid size must be "
            f">= 2 * modes = {2 * modes} (the kept modes k_x in {{0..m-1}} and {{n-m..n-1}} "
            f"would overlap)"
        )


def resolve_spectral_method(method: str) -> str:
    """Resolve ``"auto"`` to ``"dft"`` on the CPU backend and ``"fft"`` elsewhere.

    Args:
        method: ``"auto"``, ``"fft"`` or ``"dft"``.

    Returns:
        ``"fft"`` or ``"dft"``. ``"auto"`` follows ``jax.default_backend()`` (the truncated DFT
        measured 3-4x faster than the FFT pair on CPU; on accelerators cuFFT/TPU FFTs are
        fast, so the FFT is the default there until the benchmark says otherwise).
    """
    check_method(method)
    if method == "auto":
        return "dft" if jax.default_backend() == "cpu" else "fft"
    return method


def kept_wavenumbers(n: int, modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers of the kept modes on an ``n``-point axis.

    Returns:
        ``(kx, ky)``: ``kx = [0 .. m-1, n-m .. n-1]`` (``[2m]``, indices into ``fft``),
        ``ky = [0 .. m-1]`` (``[m]``, indices into ``rfft``) — the standard FNO corners.
    """
    kx = np.concatenate([np.arange(modes), np.arange(n - modes, n)])
    return kx, np.arange(modes)


@functools.lru_cache(maxsize=64)
def dft_matrices(nx: int, ny: int, modes: int) -> tuple[np.ndarray, ...]:
    """Real matrices of the truncated 2-D DFT over the kept modes, and of its inverse.

    With ``kx, ky`` from :func:`kept_wavenumbers`, the forward transform is
    ``U[kx, ky] = sum_{x, y} u[x, y] exp(-2 pi i (kx x / nx + ky y / ny))`` (equal to ``rfft2``
    at those modes) and the inverse, for coefficients ``Y[kx, ky]`` on the kept modes only, is

        y[x, y] = Re sum_{kx, ky} c_ky Y[kx, ky] exp(2 pi i (kx x / nx + ky y / ny)) / (nx ny),

    with ``c_0 = 1`` and ``c_ky = 2`` for ``ky > 0`` — exactly ``irfft2`` of the zero-padded
    half spectrum (its Hermitian doubling of the ``ky > 0`` columns, and its real part).

    Returns (float64, read-only; cached per grid):
        ``fwd_y [ny, 2m]``: ``[cos | -sin](2 pi y ky / ny)``, so ``u @ fwd_y = [Re | Im]``.
        ``fwd_x [nx, 4m]``: ``[cos | sin](2 pi x kx / nx)``.
        ``inv_x [2m, 2 nx]``: ``[cos | sin](2 pi kx x / nx)``.
        ``inv_y [2m, ny]``: ``[c cos ; -c sin](2 pi ky y / ny) / (nx ny)`` (rows: Re then Im).
    """
    kx, ky = kept_wavenumbers(nx, modes)
    angle_y = 2.0 * np.pi * np.outer(np.arange(ny), ky) / ny  # [ny, m]
    angle_x = 2.0 * np.pi * np.outer(np.arange(nx), kx) / nx  # [nx, 2m]
    fwd_y = np.concatenate([np.cos(angle_y), -np.sin(angle_y)], axis=1)
    fwd_x = np.concatenate([np.cos(angle_x), np.sin(angle_x)], axis=1)
    inv_x = np.concatenate([np.cos(angle_x).T, np.sin(angle_x).T], axis=1)
    weight = np.where(ky == 0, 1.0, 2.0)[:, None] / (nx * ny)
    inv_y = np.concatenate([weight * np.cos(angle_y).T, -weight * np.sin(angle_y).T], axis=0)
    matrices = (fwd_y, fwd_x, inv_x, inv_y)
    for matrix in matrices:
        matrix.setflags(write=False)
    return matrices


def _split_weight(weight: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """Real and imaginary parts ``[in, out, 2m, m]`` of a ``[in, out, 2m, m, 2]`` weight."""
    weight = weight.astype(dtype)
    return weight[..., 0], weight[..., 1]


def _check_spectral_shapes(x: jax.Array, weight: jax.Array) -> tuple[int, int, int, int, int, int]:
    """Shapes ``(c_in, batch, nx, ny, c_out, modes)`` of a channel-outer spectral convolution."""
    if x.ndim != 4:
        raise ValueError(f"x must be [channels, batch, x, y], got shape {x.shape}")
    if weight.ndim != 5 or weight.shape[-1] != 2 or weight.shape[2] != 2 * weight.shape[3]:
        raise ValueError(f"weight must be [in, out, 2m, m, 2], got shape {weight.shape}")
    c_in, batch, nx, ny = x.shape
    if weight.shape[0] != c_in:
        raise ValueError(f"weight expects {weight.shape[0]} input channels, x has {c_in}")
    modes = weight.shape[3]
    check_grid(nx, ny, modes, "spectral convolution")
    return c_in, batch, nx, ny, weight.shape[1], modes


def spectral_conv_dft(x: jax.Array, weight: jax.Array, precision: Precision = None) -> jax.Array:
    """Spectral convolution by a truncated DFT over the kept modes, as dense real matmuls.

    Equal (to float rounding) to :func:`spectral_conv_fft`. Five 2-D matmuls: the forward DFT
    along ``y`` (``[c b x, ny] @ [ny, 2m]``), along ``x`` on the ``m`` kept columns
    (``[c b 2m, nx] @ [nx, 4m]``), the per-mode complex channel mixing written as a real batched
    matmul (``[modes, batch, 2 c_in] @ [modes, 2 c_in, 2 c_out]``), the inverse along ``x``
    (``[o b 2m, 2m] @ [2m, 2 nx]``) and along ``y`` with ``irfft``'s Hermitian doubling and real
    part folded into the matrix (``[o b nx, 2m] @ [2m, ny]``). Only small arrays (the kept modes)
    are transposed.

    Args:
        x: ``[c_in, batch, nx, ny]`` real (channel-outer layout).
        weight: ``[c_in, c_out, 2m, m, 2]`` (real, imaginary) spectral weights; axis 2 indexes
            ``kx = 0..m-1, nx-m..nx-1`` and axis 3 ``ky = 0..m-1``.
        precision: ``lax.Precision`` of the matmuls (``None``: the backend default).

    Returns:
        ``[c_out, batch, nx, ny]`` in the dtype of ``x`` promoted with ``weight``.
    """
    c_in, batch, nx, ny, c_out, m = _check_spectral_shapes(x, weight)
    dtype = jnp.result_type(x.dtype, weight.dtype)
    fwd_y, fwd_x, inv_x, inv_y = (jnp.asarray(a, dtype=dtype) for a in dft_matrices(nx, ny, m))
    dot = functools.partial(jnp.matmul, precision=precision)

    # Forward along y: rows (c, b, x), columns (Re | Im, ky).
    a = dot(x.astype(dtype).reshape(c_in * batch * nx, ny), fwd_y)
    a = a.reshape(c_in * batch, nx, 2 * m).swapaxes(1, 2).reshape(c_in * batch * 2 * m, nx)
    # Forward along x: (a_r + i a_i)(cos - i sin) = (a_r cos + a_i sin) + i (a_i cos - a_r sin).
    p = dot(a, fwd_x).reshape(c_in, batch, 2, m, 2, 2 * m)  # (c, b, re/im, ky, cos/sin, kx)
    u_re = p[:, :, 0, :, 0] + p[:, :, 1, :, 1]  # [c, b, ky, kx]
    u_im = p[:, :, 1, :, 0] - p[:, :, 0, :, 1]

    # Channel mixing per mode, [u_re, u_im] @ [[w_re, w_im], [-w_im, w_re]] = [y_re, y_im].
    u = jnp.concatenate([u_re, u_im], axis=0)  # [2c, b, ky, kx]
    u = u.transpose(3, 2, 1, 0).reshape(2 * m * m, batch, 2 * c_in)
    w_re, w_im = _split_weight(weight, dtype)  # [c, o, kx, ky]
    w = jnp.concatenate(
        [jnp.concatenate([w_re, w_im], axis=1), jnp.concatenate([-w_im, w_re], axis=1)], axis=0
    )  # [2c, 2o, kx, ky]
    w = w.transpose(2, 3, 0, 1).reshape(2 * m * m, 2 * c_in, 2 * c_out)
    v = lax.dot_general(u, w, (((2,), (1,)), ((0,), (0,))), precision=precision)  # [kx ky, b, 2o]

    # Inverse along x: (v_r + i v_i)(cos + i sin) = (v_r cos - v_i sin) + i (v_i cos + v_r sin).
    v = v.reshape(2 * m, m, batch, 2, c_out).transpose(4, 2, 3, 1, 0)  # (o, b, re/im, ky, kx)
    q = dot(v.reshape(c_out * batch * 2 * m, 2 * m), inv_x).reshape(c_out, batch, 2, m, 2, nx)
    z_re = q[:, :, 0, :, 0] - q[:, :, 1, :, 1]  # [o, b, ky, x]
    z_im = q[:, :, 1, :, 0] + q[:, :, 0, :, 1]
    z = jnp.concatenate([z_re, z_im], axis=2).swapaxes(2, 3)  # [o, b, x, (re/im, ky)]
    # Inverse along y, real part with the Hermitian weights c_ky.
    return dot(z.reshape(c_out * batch * nx, 2 * m), inv_y).reshape(c_out, batch, nx, ny)


def spectral_conv_fft(x: jax.Array, weight: jax.Array, precision: Precision = None) -> jax.Array:
    """Spectral convolution by ``rfft2`` -> multiply the kept modes -> ``irfft2`` (Li et al.).

    Args:
        x: ``[c_in, batch, nx, ny]`` real (channel-outer layout).
        weight: ``[c_in, c_out, 2m, m, 2]`` (real, imaginary) spectral weights, as in
            :func:`spectral_conv_dft`.
        precision: ``lax.Precision`` of the mode-mixing contraction.

    Returns:
        ``[c_out, batch, nx, ny]``.
    """
    c_in, batch, nx, ny, c_out, m = _check_spectral_shapes(x, weight)
    dtype = jnp.result_type(x.dtype, weight.dtype)
    x_hat = jnp.fft.rfft2(x.astype(dtype), axes=(2, 3))  # [c, b, nx, ny // 2 + 1]
    kept = jnp.concatenate([x_hat[:, :, :m, :m], x_hat[:, :, nx - m :, :m]], axis=2)
    w_re, w_im = _split_weight(weight, dtype)
    w = lax.complex(w_re, w_im)
    y_hat = jnp.einsum("cbxy,coxy->obxy", kept, w, precision=precision)  # [o, b, 2m, m]
    gap = jnp.zeros((c_out, batch, nx - 2 * m, m), dtype=y_hat.dtype)
    y_hat = jnp.concatenate([y_hat[:, :, :m], gap, y_hat[:, :, m:]], axis=2)
    y_hat = jnp.pad(y_hat, ((0, 0), (0, 0), (0, 0), (0, ny // 2 + 1 - m)))
    return jnp.fft.irfft2(y_hat, s=(nx, ny), axes=(2, 3)).astype(dtype)


def grid_coordinates(nx: int, ny: int, dtype: Any = jnp.float32) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``x_i = i / nx`` ``[nx]`` and ``y_j = j / ny`` ``[ny]`` of the periodic grid."""
    return (np.arange(nx) / nx).astype(dtype), (np.arange(ny) / ny).astype(dtype)
