"""Spatial filters and coarse-graining operators for periodic 2-D fields.

Every field is a real array ``[..., n, n]`` sampled on the periodic square ``[0, L)^2`` at the grid
points ``x_i = i L / n`` (``linspace(0, L, n + 1)[:-1]``), with ``L = 1`` by default. All operators
act on the last two axes only, so leading (batch, ensemble, channel) axes pass through without
``vmap``, and all of them are pure ``jax.numpy`` functions that can be ``jax.jit``-compiled (filter
names, integer widths, cut-offs and coarse sizes are static Python values; the Gaussian ``width``
and ``length`` may be traced).

Wavenumbers are integers in cycles per domain, ``k = fftfreq(n) * n`` along axis ``-2`` and
``k = rfftfreq(n) * n`` along axis ``-1``; the physical wavenumber is ``2 pi k / L``. Each filter
is a multiplication of the 2-D real FFT by a real transfer function ``T(k_x, k_y)`` that is even
in each of ``k_x`` and ``k_y`` (so a real field stays real and the field is not shifted) and
equals 1 at ``k = 0`` (so constants are preserved):

    filter(f) = irfft2( T * rfft2(f) ).

Filters (LES convention of Pope, *Turbulent Flows*, ch. 13; the filter width ``Delta`` is a
length):

* ``spectral`` — sharp cut-off on a square of modes, ``T = 1[|k_x| <= c] 1[|k_y| <= c]``.
* ``gaussian`` — ``T = exp(-|2 pi k / L|^2 Delta^2 / 24)`` (Pope eq. 13.23), a Gaussian kernel
  of variance ``Delta^2 / 12`` per direction, the second moment of a top-hat of width ``Delta``.
* ``box`` — discrete top-hat over ``w x w`` grid points (the filter of the sub-grid closure
  target, e.g. 16 x 16 on a 256^2 DNS), applied by its exact discrete transfer function.

Coarse-graining maps an ``[..., n, n]`` field to ``[..., m, m]`` with ``n`` a multiple of ``m``:

* ``subsample`` — point values every ``s = n / m`` points (paper A: 256^2 DNS -> 64^2 with
  ``s = 4``, no filter); modes at ``|k| >= m / 2`` alias onto the coarse grid.
* ``spectral`` truncation — keep the modes ``|k_x|, |k_y| < m / 2``, i.e. the sharp-filtered
  field evaluated at the coarse points; equal to ``subsample`` for fields band-limited below
  ``m / 2``.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FILTERS",
    "COARSE_GRAINING_METHODS",
    "spectral_cutoff",
    "gaussian",
    "box",
    "transfer_function",
    "apply_filter",
    "subsample",
    "spectral_truncate",
    "coarse_grain",
]

FILTERS: tuple[str, ...] = ("spectral", "gaussian", "box")
"""Names accepted by :func:`apply_filter` and :func:`transfer_function`."""

COARSE_GRAINING_METHODS: tuple[str, ...] = ("subsample", "spectral")
"""Methods accepted by :func:`coarse_grain`."""


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _as_real_field(field: Any) -> jax.Array:
    """Return ``field`` as a real floating JAX array of shape ``[..., n, n]``.

    Integer and boolean inputs are promoted to the default float dtype. Raises ``ValueError`` for
    complex input, fewer than two dimensions, or non-square trailing axes.
    """
    field = jnp.asarray(field)
    if jnp.issubdtype(field.dtype, jnp.complexfloating):
        raise ValueError(
            f"field must be a real array [..., n, n]; got dtype {field.dtype} "
            "(complex fields are not supported)"
        )
    if not jnp.issubdtype(field.dtype, jnp.floating):
        field = field.astype(jnp.result_type(float))
    if field.ndim < 2 or field.shape[-1] != field.shape[-2]:
        raise ValueError(
            "field must have shape [..., n, n] with two equal trailing axes; "
            f"got shape {field.shape}"
        )
    return field


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    """Return ``value`` as a Python int after checking ``low <= value <= high``.

    Raises ``ValueError`` naming ``name``, the value and the allowed range when ``value`` is not an
    integer (``bool`` and non-integral floats are rejected) or lies outside the range.
    """
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(
            f"{name} must be an integer in [{low}, {high}]; got {value!r} of type "
            f"{type(value).__name__}"
        ) from None
    if not low <= as_int <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {as_int}")
    return as_int


def _check_positive(name: str, value: Any) -> None:
    """Check that a concrete scalar ``value`` is finite and > 0 (traced values are not checked).

    Raises ``ValueError`` naming ``name``, the value and the allowed range ``(0, inf)``.
    """
    if isinstance(value, jax.core.Tracer):
        return
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a finite number in (0, inf); "
            f"got {value!r} of type {type(value).__name__}"
        ) from None
    if not (math.isfinite(as_float) and as_float > 0.0):
        raise ValueError(f"{name} must be a finite number in (0, inf); got {as_float!r}")


def _check_name(field_name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is in ``allowed``, else raise ``ValueError`` naming ``field_name``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{field_name} must be one of {list(allowed)}; got {value!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Transfer functions (rfft2 layout [n, n // 2 + 1])
# --------------------------------------------------------------------------------------------------


def _wavenumbers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers in rfft2 layout: ``k_x`` ``[n, 1]``, ``k_y`` ``[1, n // 2 + 1]``."""
    kx = np.fft.fftfreq(n, d=1.0 / n)[:, None]
    ky = np.fft.rfftfreq(n, d=1.0 / n)[None, :]
    return kx, ky


@functools.lru_cache(maxsize=64)
def _cutoff_transfer_np(n: int, cutoff: int) -> np.ndarray:
    """Sharp square cut-off ``1[|k_x| <= c] 1[|k_y| <= c]``, float64 ``[n, n // 2 + 1]``."""
    kx, ky = _wavenumbers(n)
    mask = (np.abs(kx) <= cutoff) & (np.abs(ky) <= cutoff)
    out = mask.astype(np.float64)
    out.setflags(write=False)
    return out


def _box_kernel_1d(n: int, width_points: int) -> np.ndarray:
    """Periodic 1-D top-hat kernel ``K``, float64 ``[n]``: ``filter(f)_i = sum_j K[j] f_{i-j}``.

    Odd ``w = 2m + 1``: weight ``1 / w`` at offsets ``-m, ..., m``. Even ``w = 2m``: the centred
    trapezoid rule, weight ``1 / w`` at offsets ``-(m - 1), ..., m - 1`` and ``1 / (2w)`` at
    ``+-m``. Offsets wrap modulo ``n`` (for ``w = n`` the two half-weighted ends fall on the same
    point), and the weights sum to 1.
    """
    w = width_points
    kernel = np.zeros(n, dtype=np.float64)
    if w % 2 == 1:
        half = (w - 1) // 2
        offsets = np.arange(-half, half + 1)
        weights = np.full(offsets.shape, 1.0 / w)
    else:
        half = w // 2
        offsets = np.arange(-half, half + 1)
        weights = np.full(offsets.shape, 1.0 / w)
        weights[0] = weights[-1] = 0.5 / w
    np.add.at(kernel, offsets % n, weights)
    return kernel


@functools.lru_cache(maxsize=64)
def _box_transfer_np(n: int, width_points: int) -> np.ndarray:
    """Exact transfer function of the ``w x w`` box kernel, float64 ``[n, n // 2 + 1]``.

    The kernel is separable, ``K(i, j) = K_1(i) K_1(j)``, and symmetric, so its DFT is real:
    ``T(k_x, k_y) = T_1(k_x) T_1(k_y)`` with ``T_1 = Re fft(K_1)``.
    """
    t1 = np.fft.fft(_box_kernel_1d(n, width_points)).real
    out = t1[:, None] * t1[None, : n // 2 + 1]
    out.setflags(write=False)
    return out


def _gaussian_transfer(n: int, width: Any, length: Any, dtype: Any) -> jax.Array:
    """Gaussian transfer ``exp(-|2 pi k / L|^2 Delta^2 / 24)``, ``[n, n // 2 + 1]`` in ``dtype``."""
    kx, ky = _wavenumbers(n)
    k2 = jnp.asarray(kx**2 + ky**2, dtype=dtype)
    width = jnp.asarray(width, dtype=dtype)
    length = jnp.asarray(length, dtype=dtype)
    return jnp.exp(-((2.0 * jnp.pi / length) ** 2) * k2 * width**2 / 24.0)


def _validate_spectral(n: int, cutoff: Any) -> int:
    return _check_int("cutoff", cutoff, 1, n // 2)


def _validate_box(n: int, width_points: Any) -> int:
    return _check_int("width_points", width_points, 1, n)


def _validate_gaussian(width: Any, length: Any) -> None:
    _check_positive("width", width)
    _check_positive("length", length)


def transfer_function(n: int, name: str, dtype: Any = None, **params: Any) -> jax.Array:
    """Transfer function ``T(k_x, k_y)`` of a named filter on an ``n x n`` grid, in rfft2 layout.

    ``filter(f) = irfft2(T * rfft2(f))`` with ``T`` of shape ``[n, n // 2 + 1]`` (row ``i`` is
    ``k_x = fftfreq(n)[i] * n``, column ``j`` is ``k_y = j``). Useful for filtering quantities
    that are already in spectral space without extra FFTs.

    Args:
        n: grid size (``n >= 1``).
        name: one of :data:`FILTERS`.
        dtype: real dtype of the result (default: the default JAX float dtype).
        **params: the filter's parameters (``cutoff``; ``width`` and optional ``length``;
            ``width_points``), validated as in :func:`apply_filter`.

    Returns:
        Real array ``[n, n // 2 + 1]``.
    """
    n = _check_int("n", n, 1, np.iinfo(np.int32).max)
    name = _check_name("filter", name, FILTERS)
    _check_params(name, params)
    dtype = jnp.result_type(float) if dtype is None else dtype
    if name == "spectral":
        cutoff = _validate_spectral(n, params["cutoff"])
        return jnp.asarray(_cutoff_transfer_np(n, cutoff), dtype=dtype)
    if name == "box":
        width_points = _validate_box(n, params["width_points"])
        return jnp.asarray(_box_transfer_np(n, width_points), dtype=dtype)
    width = params["width"]
    length = params.get("length", 1.0)
    _validate_gaussian(width, length)
    return _gaussian_transfer(n, width, length, dtype)


def _fft_dtype(dtype: Any) -> Any:
    """Real dtype of the FFTs: ``dtype`` promoted to at least float32 (no half-precision FFT)."""
    return jnp.promote_types(dtype, jnp.float32)


def _apply_transfer(field: jax.Array, transfer: jax.Array) -> jax.Array:
    """``irfft2(transfer * rfft2(field))`` on the last two axes, ``[..., n, n] -> [..., n, n]``.

    Computed in :func:`_fft_dtype` and cast back to ``field.dtype``.
    """
    spectrum = jnp.fft.rfft2(field.astype(_fft_dtype(field.dtype)), axes=(-2, -1))
    out = jnp.fft.irfft2(spectrum * transfer, s=field.shape[-2:], axes=(-2, -1))
    return out.astype(field.dtype)


# --------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------


def spectral_cutoff(field: jax.Array, cutoff: int) -> jax.Array:
    """Sharp spectral filter keeping the modes with ``|k_x| <= cutoff`` and ``|k_y| <= cutoff``.

    ``T(k_x, k_y) = 1[|k_x| <= c] 1[|k_y| <= c]`` with integer wavenumbers ``k = fftfreq(n) * n``.
    The mask depends on ``|k|`` only, so it is symmetric under ``k -> -k`` and a real field stays
    real. For even ``n`` the Nyquist mode ``|k| = n / 2`` is removed whenever ``cutoff < n / 2`` (in
    both the ``fft`` and the ``rfft`` axis); ``cutoff = n // 2`` keeps every mode (the identity).
    The filter is a projection: applying it twice equals applying it once.

    Args:
        field: real array ``[..., n, n]``.
        cutoff: static integer in ``[1, n // 2]``.

    Returns:
        Filtered field ``[..., n, n]``, same dtype.
    """
    field = _as_real_field(field)
    n = field.shape[-1]
    cutoff = _validate_spectral(n, cutoff)
    transfer = jnp.asarray(_cutoff_transfer_np(n, cutoff), dtype=_fft_dtype(field.dtype))
    return _apply_transfer(field, transfer)


def gaussian(
    field: jax.Array, width: float | jax.Array, length: float | jax.Array = 1.0
) -> jax.Array:
    """Gaussian filter of width ``Delta`` (a physical length) on the periodic square ``[0, L)^2``.

    ``T(k) = exp(-|kappa|^2 Delta^2 / 24)`` with ``kappa = 2 pi k / L`` (Pope, *Turbulent Flows*,
    eq. 13.23), the Fourier transform of the kernel

        G(r) = (6 / (pi Delta^2)) exp(-6 |r|^2 / Delta^2)    (periodised),

    whose variance per direction is ``Delta^2 / 12`` — the second moment of a continuous top-hat of
    width ``Delta``.

    Args:
        field: real array ``[..., n, n]``.
        width: filter width ``Delta > 0`` in the units of ``length``; may be traced under ``jit``
            (it is then not validated).
        length: domain side ``L > 0`` (default 1).

    Returns:
        Filtered field ``[..., n, n]``, same dtype.
    """
    field = _as_real_field(field)
    _validate_gaussian(width, length)
    transfer = _gaussian_transfer(field.shape[-1], width, length, _fft_dtype(field.dtype))
    return _apply_transfer(field, transfer)


def box(field: jax.Array, width_points: int) -> jax.Array:
    """Discrete periodic top-hat (moving average) over ``w x w`` grid points, ``w = width_points``.

    ``filter(f)_{i,j} = sum_{a,b} K_1(a) K_1(b) f_{i-a, j-b}`` (indices modulo ``n``) with the 1-D
    kernel

    * odd ``w = 2m + 1``: ``K_1(a) = 1 / w`` for ``|a| <= m`` — the centred average of ``w`` points;
    * even ``w = 2m``: the centred trapezoid rule over ``w + 1`` points, ``K_1(a) = 1 / w`` for
      ``|a| < m`` and ``1 / (2w)`` for ``|a| = m``,

    so the kernel is symmetric and the filter does not shift the field. It is applied spectrally
    with its exact discrete transfer function (built in float64 at trace time),
    ``T = T_1(k_x) T_1(k_y)`` with ``theta = 2 pi k / n`` and

        T_1 = sin(w theta / 2) / (w sin(theta / 2))    (odd w),
        T_1 = sin(w theta / 2) cot(theta / 2) / w      (even w),     T_1(0) = 1,

    so it equals the direct periodic convolution to rounding. ``w = n`` gives the domain mean.

    Args:
        field: real array ``[..., n, n]``.
        width_points: static integer in ``[1, n]`` (``1`` is the identity).

    Returns:
        Filtered field ``[..., n, n]``, same dtype.
    """
    field = _as_real_field(field)
    n = field.shape[-1]
    width_points = _validate_box(n, width_points)
    transfer = jnp.asarray(_box_transfer_np(n, width_points), dtype=_fft_dtype(field.dtype))
    return _apply_transfer(field, transfer)


_FILTER_FUNCTIONS: dict[str, Callable[..., jax.Array]] = {
    "spectral": spectral_cutoff,
    "gaussian": gaussian,
    "box": box,
}


def _check_params(name: str, params: dict[str, Any]) -> None:
    """Check that ``params`` are exactly the keyword parameters accepted by filter ``name``.

    Raises ``ValueError`` naming the filter, the offending parameters and the accepted ones.
    """
    signature = inspect.signature(_FILTER_FUNCTIONS[name])
    accepted = [p for p in signature.parameters.values() if p.name != "field"]
    accepted_names = [p.name for p in accepted]
    required = [p.name for p in accepted if p.default is inspect.Parameter.empty]
    unexpected = sorted(set(params) - set(accepted_names))
    missing = [p for p in required if p not in params]
    if unexpected or missing:
        raise ValueError(
            f"filter {name!r} takes parameters {accepted_names} (required: {required}); "
            f"got unexpected {unexpected} and missing {missing}"
        )


def apply_filter(field: jax.Array, name: str, **params: Any) -> jax.Array:
    """Apply the filter called ``name`` with keyword parameters ``params``.

    ============  ===================================  ==================================
    ``name``      parameters                           function
    ============  ===================================  ==================================
    "spectral"    ``cutoff`` (int, ``1..n//2``)         :func:`spectral_cutoff`
    "gaussian"    ``width`` (> 0), ``length`` (> 0)     :func:`gaussian`
    "box"         ``width_points`` (int, ``1..n``)      :func:`box`
    ============  ===================================  ==================================

    Args:
        field: real array ``[..., n, n]``.
        name: one of :data:`FILTERS` (static).
        **params: the filter's parameters.

    Returns:
        Filtered field ``[..., n, n]``.

    Raises:
        ValueError: unknown ``name`` (the message names ``filter`` and the allowed names),
            unknown or missing parameters, or parameters out of range.
    """
    name = _check_name("filter", name, FILTERS)
    _check_params(name, params)
    return _FILTER_FUNCTIONS[name](field, **params)


# --------------------------------------------------------------------------------------------------
# Coarse-graining
# --------------------------------------------------------------------------------------------------


def _check_divides(n_fine: int, n_coarse: int, what: str) -> None:
    """Raise ``ValueError`` naming both sizes unless ``n_fine`` is a multiple of ``n_coarse``."""
    if n_fine % n_coarse != 0:
        raise ValueError(
            f"fine grid size n = {n_fine} must be a multiple of the {what} = {n_coarse} "
            f"(allowed: divisors of {n_fine})"
        )


def subsample(field: jax.Array, stride: int) -> jax.Array:
    """Point subsampling ``f_c[i, j] = f[s i, s j]``: ``[..., n, n] -> [..., n / s, n / s]``.

    The coarse grid points ``x_i = i L / (n / s)`` are a subset of the fine ones (paper A: 256^2 DNS
    -> 64^2 with ``s = 4``, no filter). Modes with ``|k| >= n / (2 s)`` alias onto the coarse grid.

    Args:
        field: real array ``[..., n, n]``.
        stride: static integer ``s`` in ``[1, n]`` dividing ``n``.

    Returns:
        Coarse field ``[..., n / s, n / s]``, same dtype.
    """
    field = _as_real_field(field)
    n = field.shape[-1]
    stride = _check_int("stride", stride, 1, n)
    _check_divides(n, stride, "stride")
    return field[..., ::stride, ::stride]


def spectral_truncate(field: jax.Array, n_coarse: int) -> jax.Array:
    """Spectral truncation to an ``m x m`` grid, ``m = n_coarse``: ``[..., n, n] -> [..., m, m]``.

    Keeps the modes with ``|k_x| < m / 2`` and ``|k_y| < m / 2`` (the coarse Nyquist mode of an even
    ``m`` is dropped, so the result has no unresolvable half-mode) and rescales by ``(m / n)^2`` for
    the unnormalised FFT:

        f_hat_c(k) = (m / n)^2 f_hat(k)  for |k_x|, |k_y| < m / 2,     f_c = irfft2(f_hat_c),

    so ``f_c`` equals the sharply filtered fine field evaluated at the coarse points
    ``x_i = i L / m``. For a field band-limited below ``m / 2`` this is exact and agrees with
    :func:`subsample`. ``m = n`` with odd ``n`` is the identity; with even ``n`` it drops the
    Nyquist mode.

    Args:
        field: real array ``[..., n, n]``.
        n_coarse: static integer ``m`` in ``[1, n]`` dividing ``n``.

    Returns:
        Coarse field ``[..., m, m]``, same dtype.
    """
    field = _as_real_field(field)
    n = field.shape[-1]
    m = _check_int("n_coarse", n_coarse, 1, n)
    _check_divides(n, m, "coarse size n_coarse")
    k_rows = np.fft.fftfreq(m, d=1.0 / m).astype(np.int64)
    k_cols = np.fft.rfftfreq(m, d=1.0 / m).astype(np.int64)
    keep = (2 * np.abs(k_rows)[:, None] < m) & (2 * k_cols[None, :] < m)
    scale = np.where(keep, (m / n) ** 2, 0.0)
    compute_dtype = _fft_dtype(field.dtype)
    spectrum = jnp.fft.rfft2(field.astype(compute_dtype), axes=(-2, -1))
    spectrum = spectrum[..., k_rows % n, :][..., k_cols]
    coarse_spectrum = spectrum * jnp.asarray(scale, dtype=compute_dtype)
    out = jnp.fft.irfft2(coarse_spectrum, s=(m, m), axes=(-2, -1))
    return out.astype(field.dtype)


def coarse_grain(field: jax.Array, n_coarse: int, method: str) -> jax.Array:
    """Coarse-grain ``[..., n, n] -> [..., m, m]`` (``m = n_coarse`` dividing ``n``) by ``method``.

    ``"subsample"``: :func:`subsample` with stride ``n / m``; ``"spectral"``:
    :func:`spectral_truncate`.

    Raises:
        ValueError: unknown ``method`` (naming ``method`` and the allowed names), ``n_coarse``
            out of ``[1, n]`` or not dividing ``n``.
    """
    method = _check_name("method", method, COARSE_GRAINING_METHODS)
    field = _as_real_field(field)
    n = field.shape[-1]
    m = _check_int("n_coarse", n_coarse, 1, n)
    _check_divides(n, m, "coarse size n_coarse")
    if method == "subsample":
        return subsample(field, n // m)
    return spectral_truncate(field, m)
