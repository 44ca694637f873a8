"""Tests for closurejax.physics.filters: filters, transfer functions and coarse-graining."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.physics import filters

# Each case: (name, params) for apply_filter, valid for n = 15 and n = 16.
FILTER_CASES: list[tuple[str, dict]] = [
    ("spectral", {"cutoff": 3}),
    ("spectral", {"cutoff": 7}),
    ("gaussian", {"width": 0.13}),
    ("gaussian", {"width": 0.4, "length": 2.0}),
    ("box", {"width_points": 1}),
    ("box", {"width_points": 3}),
    ("box", {"width_points": 4}),
]
FILTER_IDS = [f"{name}-{'-'.join(f'{k}{v}' for k, v in p.items())}" for name, p in FILTER_CASES]


@pytest.fixture(scope="module", autouse=True)
def _enable_x64():
    """Run this module in float64 and restore the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def _grid(n: int, length: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates ``X`` (axis -2) and ``Y`` (axis -1), each ``[n, n]``."""
    x = np.linspace(0.0, length, n + 1)[:-1]
    return np.meshgrid(x, x, indexing="ij")


def _random(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _band_limited(shape: tuple[int, ...], kmax: int, seed: int = 0) -> np.ndarray:
    """Random real field ``[..., n, n]`` whose modes all satisfy ``|k_x|, |k_y| <= kmax``."""
    n = shape[-1]
    spectrum = np.fft.rfft2(_random(shape, seed), axes=(-2, -1))
    kx = np.fft.fftfreq(n, d=1.0 / n)[:, None]
    ky = np.fft.rfftfreq(n, d=1.0 / n)[None, :]
    spectrum = spectrum * ((np.abs(kx) <= kmax) & (ky <= kmax))
    return np.fft.irfft2(spectrum, s=shape[-2:], axes=(-2, -1))


def _mode_magnitude(n: int) -> np.ndarray:
    """``max(|k_x|, |k_y|)`` on the full fft2 layout, ``[n, n]``."""
    k = np.abs(np.fft.fftfreq(n, d=1.0 / n))
    return np.maximum(k[:, None], k[None, :])


# --------------------------------------------------------------------------------------------------
# Properties shared by every filter
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [15, 16])
@pytest.mark.parametrize(("name", "params"), FILTER_CASES, ids=FILTER_IDS)
def test_filters_preserve_constants(n: int, name: str, params: dict) -> None:
    field = np.full((n, n), -3.7)
    out = filters.apply_filter(field, name, **params)
    np.testing.assert_allclose(np.asarray(out), field, rtol=0, atol=1e-13)
    transfer = filters.transfer_function(n, name, **params)
    assert float(transfer[0, 0]) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("n", [15, 16])
@pytest.mark.parametrize(("name", "params"), FILTER_CASES, ids=FILTER_IDS)
def test_filters_commute_with_grid_translation(n: int, name: str, params: dict) -> None:
    field = _random((n, n), seed=1)
    for shift in [(1, 0), (0, 1), (-2, 5)]:
        shifted_then_filtered = filters.apply_filter(np.roll(field, shift, (0, 1)), name, **params)
        filtered_then_shifted = np.roll(
            np.asarray(filters.apply_filter(field, name, **params)), shift, (0, 1)
        )
        np.testing.assert_allclose(
            np.asarray(shifted_then_filtered), filtered_then_shifted, rtol=0, atol=1e-13
        )


@pytest.mark.parametrize(("name", "params"), FILTER_CASES, ids=FILTER_IDS)
def test_filters_batched_equal_per_item(name: str, params: dict) -> None:
    batch = _random((2, 3, 16, 16), seed=2)
    out = np.asarray(filters.apply_filter(batch, name, **params))
    assert out.shape == batch.shape
    for i in range(2):
        for j in range(3):
            single = np.asarray(filters.apply_filter(batch[i, j], name, **params))
            np.testing.assert_allclose(out[i, j], single, rtol=0, atol=1e-14)


@pytest.mark.parametrize(("name", "params"), FILTER_CASES, ids=FILTER_IDS)
def test_filter_equals_its_transfer_function(name: str, params: dict) -> None:
    field = _random((2, 16, 16), seed=3)
    transfer = np.asarray(filters.transfer_function(16, name, **params))
    assert transfer.shape == (16, 9)
    expected = np.fft.irfft2(np.fft.rfft2(field) * transfer, s=(16, 16))
    out = filters.apply_filter(field, name, **params)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize(("name", "params"), FILTER_CASES, ids=FILTER_IDS)
def test_filters_keep_the_input_dtype(name: str, params: dict) -> None:
    field = _random((16, 16), seed=4)
    out64 = filters.apply_filter(field, name, **params)
    assert out64.dtype == jnp.float64
    for dtype, atol in [(jnp.float32, 1e-5), (jnp.bfloat16, 5e-2)]:
        out = filters.apply_filter(jnp.asarray(field, dtype=dtype), name, **params)
        assert out.dtype == dtype
        np.testing.assert_allclose(
            np.asarray(out, dtype=np.float64), np.asarray(out64), rtol=0, atol=atol
        )


def test_coarse_graining_keeps_the_input_dtype() -> None:
    field = jnp.asarray(_band_limited((32, 32), 3, seed=4), dtype=jnp.bfloat16)
    for method in filters.COARSE_GRAINING_METHODS:
        assert filters.coarse_grain(field, 8, method).dtype == jnp.bfloat16


def test_gaussian_is_differentiable_in_width() -> None:
    field = jnp.asarray(_random((16, 16), seed=14))

    def energy(width: jax.Array) -> jax.Array:
        return (filters.gaussian(field, width) ** 2).sum()

    step = 1e-6
    finite_difference = (energy(0.1 + step) - energy(0.1 - step)) / (2 * step)
    assert float(jax.grad(energy)(0.1)) == pytest.approx(float(finite_difference), rel=1e-7)
    assert float(jax.grad(energy)(0.1)) < 0.0  # a wider filter removes energy


def test_filters_under_jit() -> None:
    field = _random((2, 32, 32), seed=5)
    box_jit = jax.jit(lambda f: filters.apply_filter(f, "box", width_points=4))
    np.testing.assert_allclose(
        np.asarray(box_jit(field)), np.asarray(filters.box(field, 4)), rtol=0, atol=1e-14
    )
    # The Gaussian width may be traced.
    gaussian_jit = jax.jit(filters.gaussian)
    np.testing.assert_allclose(
        np.asarray(gaussian_jit(field, 0.07)),
        np.asarray(filters.gaussian(field, 0.07)),
        rtol=0,
        atol=1e-14,
    )
    coarse_jit = jax.jit(lambda f: filters.coarse_grain(f, 8, "spectral"))
    np.testing.assert_allclose(
        np.asarray(coarse_jit(field)),
        np.asarray(filters.spectral_truncate(field, 8)),
        rtol=0,
        atol=1e-14,
    )


# --------------------------------------------------------------------------------------------------
# Spectral cut-off
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "cutoff"), [(16, 1), (16, 5), (16, 7), (15, 3), (15, 6)])
def test_spectral_cutoff_removes_exactly_the_modes_above_cutoff(n: int, cutoff: int) -> None:
    field = _random((n, n), seed=6)
    out = np.asarray(filters.spectral_cutoff(field, cutoff))
    in_hat, out_hat = np.fft.fft2(field), np.fft.fft2(out)
    kept = _mode_magnitude(n) <= cutoff
    np.testing.assert_allclose(out_hat[kept], in_hat[kept], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out_hat[~kept], 0.0, rtol=0, atol=1e-12)
    assert np.abs(in_hat[~kept]).min() > 1e-3  # the removed modes were really there


@pytest.mark.parametrize(("n", "cutoff"), [(16, 4), (15, 7), (16, 8)])
def test_spectral_cutoff_leaves_band_limited_field_unchanged(n: int, cutoff: int) -> None:
    field = _band_limited((n, n), cutoff, seed=7)
    out = np.asarray(filters.spectral_cutoff(field, cutoff))
    np.testing.assert_allclose(out, field, rtol=0, atol=1e-13)
    twice = np.asarray(filters.spectral_cutoff(out, cutoff))
    np.testing.assert_allclose(twice, out, rtol=0, atol=1e-13)


@pytest.mark.parametrize("axis", [0, 1])
def test_spectral_cutoff_nyquist_removed_below_half_n(axis: int) -> None:
    n = 16
    x_index = np.arange(n)
    nyquist_1d = np.cos(np.pi * x_index)  # the k = n / 2 mode, (-1)^i
    field = nyquist_1d[:, None] * np.ones(n) if axis == 0 else np.ones(n)[:, None] * nyquist_1d
    field = field + 0.5
    removed = np.asarray(filters.spectral_cutoff(field, n // 2 - 1))
    np.testing.assert_allclose(removed, 0.5, rtol=0, atol=1e-14)
    kept = np.asarray(filters.spectral_cutoff(field, n // 2))
    np.testing.assert_allclose(kept, field, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# Gaussian
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kx", "ky", "width", "length"),
    [(1, 0, 0.1, 1.0), (3, -2, 0.05, 1.0), (0, 5, 0.2, 1.0), (4, 7, 0.5, 2.5), (-6, 1, 1e-3, 1.0)],
)
def test_gaussian_multiplies_a_fourier_mode_by_analytic_factor(
    kx: int, ky: int, width: float, length: float
) -> None:
    n = 32
    xx, yy = _grid(n, length)
    mode = np.cos(2.0 * np.pi * (kx * xx + ky * yy) / length + 0.3)
    out = np.asarray(filters.gaussian(mode, width, length=length))
    factor = math.exp(-((2.0 * math.pi / length) ** 2) * (kx**2 + ky**2) * width**2 / 24.0)
    np.testing.assert_allclose(out, factor * mode, rtol=0, atol=1e-13)


def test_gaussian_kernel_has_variance_delta_squared_over_twelve() -> None:
    # The filtered delta is the (well resolved, effectively unaliased) Gaussian kernel; its second
    # moment per direction is Delta^2 / 12 (Pope eq. 13.23), independent of the grid.
    n, width = 128, 0.1
    delta = np.zeros((n, n))
    delta[0, 0] = 1.0
    kernel = np.asarray(filters.gaussian(delta, width))
    distance = np.minimum(np.arange(n), n - np.arange(n)) / n  # periodic distance to x = 0
    assert kernel.sum() == pytest.approx(1.0, abs=1e-13)
    variance_x = float((kernel * distance[:, None] ** 2).sum())
    variance_y = float((kernel * distance[None, :] ** 2).sum())
    assert variance_x == pytest.approx(width**2 / 12.0, rel=1e-9)
    assert variance_y == pytest.approx(width**2 / 12.0, rel=1e-9)


# --------------------------------------------------------------------------------------------------
# Box
# --------------------------------------------------------------------------------------------------


def _direct_box(field: np.ndarray, w: int) -> np.ndarray:
    """Periodic ``w x w`` top-hat by explicit shifted sums (trapezoid ends for even ``w``)."""
    if w % 2 == 1:
        taps = [(a, 1.0 / w) for a in range(-(w // 2), w // 2 + 1)]
    else:
        m = w // 2
        taps = [(a, 1.0 / w) for a in range(-m + 1, m)] + [(-m, 0.5 / w), (m, 0.5 / w)]
    out = np.zeros_like(field)
    for a, wa in taps:
        for b, wb in taps:
            out += wa * wb * np.roll(field, (a, b), axis=(-2, -1))
    return out


@pytest.mark.parametrize(
    ("n", "w"), [(16, 1), (16, 2), (16, 3), (16, 4), (16, 7), (16, 16), (15, 6), (15, 15)]
)
def test_box_equals_direct_periodic_average(n: int, w: int) -> None:
    field = _random((2, n, n), seed=8)
    out = np.asarray(filters.box(field, w))
    np.testing.assert_allclose(out, _direct_box(field, w), rtol=0, atol=1e-13)
    if w == n:  # the average over the whole period is the mean
        np.testing.assert_allclose(out, field.mean(axis=(-2, -1), keepdims=True) + 0 * field)


@pytest.mark.parametrize("w", [2, 3, 4, 5, 8])
def test_box_transfer_matches_closed_form(w: int) -> None:
    n = 32
    theta = 2.0 * np.pi * np.fft.fftfreq(n)[1:]
    if w % 2 == 1:
        expected = np.sin(w * theta / 2) / (w * np.sin(theta / 2))
    else:
        expected = np.sin(w * theta / 2) / (w * np.tan(theta / 2))
    transfer = np.asarray(filters.transfer_function(n, "box", width_points=w))
    np.testing.assert_allclose(transfer[1:, 0], expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(transfer[0, 1:], expected[: n // 2], rtol=0, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# Coarse-graining
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(64, 16), (64, 32), (45, 15), (48, 16), (27, 9)])
def test_subsample_and_truncate_agree_for_band_limited_fields(n: int, m: int) -> None:
    kmax = (m - 1) // 2  # the largest integer below m / 2
    field = _band_limited((3, n, n), kmax, seed=9)
    by_points = np.asarray(filters.subsample(field, n // m))
    by_modes = np.asarray(filters.spectral_truncate(field, m))
    assert by_points.shape == by_modes.shape == (3, m, m)
    np.testing.assert_allclose(by_modes, by_points, rtol=0, atol=1e-13)
    for method, expected in [("subsample", by_points), ("spectral", by_modes)]:
        out = np.asarray(filters.coarse_grain(field, m, method))
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-14)


def test_subsample_takes_every_stride_th_point() -> None:
    field = _random((2, 12, 12), seed=10)
    np.testing.assert_array_equal(np.asarray(filters.subsample(field, 3)), field[:, ::3, ::3])
    np.testing.assert_array_equal(np.asarray(filters.subsample(field, 1)), field)


def test_truncation_drops_modes_that_subsampling_aliases() -> None:
    n, m = 64, 16
    xx, yy = _grid(n)
    xc, yc = _grid(m)
    for k in [8, 9, 13]:  # at or above the coarse Nyquist m / 2 = 8
        mode = np.cos(2.0 * np.pi * (k * xx + 2 * yy))
        np.testing.assert_allclose(
            np.asarray(filters.spectral_truncate(mode, m)), 0.0, rtol=0, atol=1e-13
        )
        aliased = np.asarray(filters.subsample(mode, n // m))
        np.testing.assert_allclose(
            aliased, np.cos(2.0 * np.pi * ((k - m) * xc + 2 * yc)), rtol=0, atol=1e-12
        )


@pytest.mark.parametrize(("n", "m"), [(64, 16), (45, 15), (45, 9)])
def test_truncation_is_sharp_cutoff_sampled_at_coarse_points(n: int, m: int) -> None:
    field = _random((n, n), seed=11)
    sharp = filters.spectral_cutoff(field, (m - 1) // 2)
    expected = np.asarray(filters.subsample(sharp, n // m))
    np.testing.assert_allclose(
        np.asarray(filters.spectral_truncate(field, m)), expected, rtol=0, atol=1e-13
    )


def test_truncation_composes_and_is_identity_at_full_odd_size() -> None:
    field = _random((2, 64, 64), seed=12)
    twice = filters.spectral_truncate(filters.spectral_truncate(field, 32), 16)
    once = filters.spectral_truncate(field, 16)
    np.testing.assert_allclose(np.asarray(twice), np.asarray(once), rtol=0, atol=1e-13)
    odd = _random((15, 15), seed=13)
    np.testing.assert_allclose(
        np.asarray(filters.spectral_truncate(odd, 15)), odd, rtol=0, atol=1e-13
    )


@pytest.mark.parametrize("method", ["subsample", "spectral"])
def test_coarse_grain_preserves_constants(method: str) -> None:
    out = np.asarray(filters.coarse_grain(np.full((4, 32, 32), 2.5), 8, method))
    assert out.shape == (4, 8, 8)
    np.testing.assert_allclose(out, 2.5, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

_F16 = np.zeros((16, 16))

ERROR_CASES: list[tuple[Callable[[], object], str]] = [
    (
        lambda: filters.apply_filter(_F16, "tophat", width_points=3),
        r"filter must be one of \['spectral', 'gaussian', 'box'\]; got 'tophat'",
    ),
    (
        lambda: filters.apply_filter(_F16, "box", width=3),
        r"filter 'box' takes parameters \['width_points'\].*unexpected \['width'\]",
    ),
    (
        lambda: filters.apply_filter(_F16, "spectral"),
        r"filter 'spectral' takes parameters \['cutoff'\].*missing \['cutoff'\]",
    ),
    (lambda: filters.spectral_cutoff(_F16, 0), r"cutoff must be an integer in \[1, 8\]; got 0"),
    (lambda: filters.spectral_cutoff(_F16, 9), r"cutoff must be an integer in \[1, 8\]; got 9"),
    (
        lambda: filters.spectral_cutoff(_F16, 2.5),
        r"cutoff must be an integer in \[1, 8\]; got 2.5",
    ),
    (
        lambda: filters.spectral_cutoff(_F16, True),
        r"cutoff must be an integer in \[1, 8\]; got True",
    ),
    (
        lambda: filters.gaussian(_F16, 0.0),
        r"width must be a finite number in \(0, inf\); got 0.0",
    ),
    (
        lambda: filters.gaussian(_F16, -0.1),
        r"width must be a finite number in \(0, inf\); got -0.1",
    ),
    (
        lambda: filters.gaussian(_F16, float("nan")),
        r"width must be a finite number in \(0, inf\); got nan",
    ),
    (
        lambda: filters.apply_filter(_F16, "gaussian", width=0.1, length=0),
        r"length must be a finite number in \(0, inf\); got 0.0",
    ),
    (
        lambda: filters.box(_F16, 0),
        r"width_points must be an integer in \[1, 16\]; got 0",
    ),
    (
        lambda: filters.box(_F16, 17),
        r"width_points must be an integer in \[1, 16\]; got 17",
    ),
    (
        lambda: filters.transfer_function(16, "box", width_points=20),
        r"width_points must be an integer in \[1, 16\]; got 20",
    ),
    (
        lambda: filters.transfer_function(16, "sharp", cutoff=2),
        r"filter must be one of \['spectral', 'gaussian', 'box'\]; got 'sharp'",
    ),
    (
        lambda: filters.subsample(_F16, 3),
        r"fine grid size n = 16 must be a multiple of the stride = 3",
    ),
    (lambda: filters.subsample(_F16, 0), r"stride must be an integer in \[1, 16\]; got 0"),
    (
        lambda: filters.spectral_truncate(_F16, 6),
        r"fine grid size n = 16 must be a multiple of the coarse size n_coarse = 6",
    ),
    (
        lambda: filters.spectral_truncate(_F16, 32),
        r"n_coarse must be an integer in \[1, 16\]; got 32",
    ),
    (
        lambda: filters.coarse_grain(_F16, 5, "subsample"),
        r"fine grid size n = 16 must be a multiple of the coarse size n_coarse = 5",
    ),
    (
        lambda: filters.coarse_grain(_F16, 8, "bilinear"),
        r"method must be one of \['subsample', 'spectral'\]; got 'bilinear'",
    ),
    (
        lambda: filters.spectral_cutoff(np.zeros((16, 8)), 2),
        r"two equal trailing axes; got shape \(16, 8\)",
    ),
    (lambda: filters.box(np.zeros(16), 2), r"two equal trailing axes; got shape \(16,\)"),
    (
        lambda: filters.gaussian(np.zeros((8, 8), dtype=np.complex128), 0.1),
        r"field must be a real array .*complex",
    ),
]


@pytest.mark.parametrize(("call", "match"), ERROR_CASES)
def test_bad_inputs_raise_clear_errors(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
