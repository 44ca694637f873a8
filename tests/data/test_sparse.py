"""Tests of closurejax.data.sparse: lattices, periodic bicubic interpolation, smoothed encoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.data import sparse


def smooth_field(n: int) -> np.ndarray:
    """A low-mode periodic field on the grid x_i = i / n, ``[n, n]``."""
    x = np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    return (
        np.sin(2 * np.pi * X) * np.cos(4 * np.pi * Y)
        + 0.5 * np.cos(2 * np.pi * (X + Y))
        + 0.3 * np.sin(2 * np.pi * (2 * X - Y))
    )


def rel_err(a: jax.Array, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def test_lattice_and_mask() -> None:
    field = jnp.arange(2 * 64 * 64, dtype=jnp.float32).reshape(2, 64, 64)
    values = sparse.lattice(field, 4)
    assert values.shape == (2, 16, 16)
    np.testing.assert_array_equal(values[1, 3, 5], field[1, 12, 20])
    mask = sparse.lattice_mask(64, 4)
    assert mask.shape == (64, 64) and mask.dtype == jnp.bool_
    assert int(mask.sum()) == 256  # 6.25 % of 64^2, paper A
    np.testing.assert_array_equal(field[0][mask], values[0].ravel())
    with pytest.raises(ValueError, match="n = 64 is not a multiple of stride = 5"):
        sparse.lattice(field, 5)
    with pytest.raises(ValueError, match="not a multiple"):
        sparse.lattice_mask(10, 4)
    with pytest.raises(ValueError, match="square"):
        sparse.lattice(jnp.zeros((8, 4)), 2)


def test_keys_kernel_values() -> None:
    x = np.array([0.0, 1.0, 2.0, -1.0, 0.5, 1.5, 2.5])
    w = sparse.keys_kernel(x)
    np.testing.assert_allclose(w[:4], [1.0, 0.0, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(w[4:], [0.5625, -0.0625, 0.0])  # Catmull-Rom at the half points


def test_interpolation_is_exact_at_lattice_points() -> None:
    values = jax.random.normal(jax.random.key(0), (3, 16, 16))
    full = sparse.interpolate(values, 4)
    assert full.shape == (3, 64, 64) and full.dtype == values.dtype
    np.testing.assert_array_equal(full[..., ::4, ::4], values)


def test_interpolation_reproduces_constants_and_quadratics() -> None:
    m, s = 16, 4
    np.testing.assert_allclose(sparse.interpolate(jnp.full((m, m), 2.5), s), 2.5, rtol=1e-6)
    # Locally quadratic lattice data (not periodic across the wrap): reproduced exactly wherever
    # the four taps do not wrap, i.e. at positions p in [1, m - 2] lattice units.
    a = np.arange(m, dtype=np.float64)
    q = 0.3 * a[:, None] ** 2 - 2.0 * a[:, None] * a[None, :] + a[None, :] + 1.0
    full = np.asarray(sparse.interpolate(jnp.asarray(q, jnp.float32), s))
    p = np.arange(m * s) / s
    ok = (p >= 1) & (p <= m - 2)
    P, Q = np.meshgrid(p[ok], p[ok], indexing="ij")
    np.testing.assert_allclose(
        full[np.ix_(ok, ok)], 0.3 * P**2 - 2.0 * P * Q + Q + 1.0, rtol=1e-5, atol=1e-4
    )


def test_interpolation_is_periodic() -> None:
    values = jax.random.normal(jax.random.key(1), (8, 8))
    full = sparse.interpolate(values, 4)
    shifted = sparse.interpolate(jnp.roll(values, (1, -2), axis=(0, 1)), 4)
    np.testing.assert_allclose(shifted, jnp.roll(full, (4, -8), axis=(0, 1)), atol=1e-5)


def test_interpolation_error_on_smooth_field_is_small_and_third_order() -> None:
    f = smooth_field(64)
    err4 = rel_err(sparse.encode(jnp.asarray(f, jnp.float32), 4, "interpolated"), f)
    err8 = rel_err(sparse.encode(jnp.asarray(f, jnp.float32), 8, "interpolated"), f)
    assert err4 < 1e-2
    assert err8 / err4 > 6.0  # O(h^3): halving the spacing cuts the error about 8x


def test_smoothed_preserves_the_mean() -> None:
    const = sparse.smoothed(jnp.full((16, 16), 3.0), 4, 7)
    assert const.shape == (64, 64)
    np.testing.assert_allclose(float(const.mean()), 3.0, rtol=1e-6)
    # a 7 x 7 box holds 1, 2 or 4 points of the stride-4 lattice
    np.testing.assert_allclose(
        np.unique(np.round(np.asarray(const), 5)), np.round(3.0 * 16 / 49 * np.array([1, 2, 4]), 5)
    )
    values = jax.random.normal(jax.random.key(2), (2, 16, 16)) + 1.0
    out = sparse.smoothed(values, 4, 5)
    np.testing.assert_allclose(out.mean(axis=(-2, -1)), values.mean(axis=(-2, -1)), rtol=1e-5)


def test_smoothed_matches_zero_fill_box_filter_reference() -> None:
    s, k = 4, 7
    values = np.random.default_rng(3).normal(size=(2, 16, 16)).astype(np.float32)
    zero_filled = np.zeros((2, 64, 64), np.float32)
    zero_filled[..., ::s, ::s] = values
    box = sum(
        np.roll(zero_filled, (dx, dy), axis=(-2, -1))
        for dx in range(-(k // 2), k // 2 + 1)
        for dy in range(-(k // 2), k // 2 + 1)
    )
    reference = box / k**2 * s**2
    np.testing.assert_allclose(sparse.smoothed(values, s, k), reference, atol=1e-5)
    np.testing.assert_allclose(sparse.smoothed(values, s, 1), zero_filled * s**2, atol=1e-6)


@pytest.mark.parametrize("kernel_size", [0, 4, 65, -3])
def test_smoothed_rejects_bad_kernels(kernel_size: int) -> None:
    with pytest.raises(ValueError, match=r"odd int in \[1, n = 64\]"):
        sparse.smoothed(jnp.zeros((16, 16)), 4, kernel_size)


def test_encode_dispatch_batch_and_jit() -> None:
    fields = jax.random.normal(jax.random.key(4), (2, 3, 32, 32))
    for name, direct in (
        ("interpolated", lambda v: sparse.interpolate(v, 4)),
        ("smoothed", lambda v: sparse.smoothed(v, 4, 3)),
    ):
        out = sparse.encode(fields, 4, name, kernel_size=3)
        assert out.shape == fields.shape
        np.testing.assert_allclose(out, direct(fields[..., ::4, ::4]), atol=1e-6)
        one = sparse.encode(fields[1, 2], 4, name, kernel_size=3)
        np.testing.assert_allclose(out[1, 2], one, atol=1e-6)
        jitted = jax.jit(sparse.encode, static_argnums=(1, 2, 3))(fields, 4, name, 3)
        np.testing.assert_allclose(jitted, out, atol=1e-6)
    with pytest.raises(ValueError, match=r"allowed: \('interpolated', 'smoothed'\)"):
        sparse.encode(fields, 4, "bicubic")
