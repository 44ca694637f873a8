"""Spectral grid helpers: white noise drawn in spectral space."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.physics import grid as grid_lib


def test_white_noise_hat_is_the_transform_of_a_real_field() -> None:
    """rfft2(irfft2(ξ̂)) = ξ̂: the Hermitian columns k_y = 0, n/2 are consistent, so nothing of
    the draw is lost when the solver or a user goes to physical space."""
    grid = grid_lib.SpectralGrid(16)
    xi_hat = grid_lib.white_noise_hat(jax.random.PRNGKey(0), grid)
    assert xi_hat.shape == grid.rfft_shape and xi_hat.dtype == jnp.complex64
    roundtrip = grid.to_spectral(grid.to_physical(xi_hat))
    np.testing.assert_allclose(roundtrip, xi_hat, atol=1e-4)


def test_white_noise_hat_has_the_law_of_iid_unit_normals() -> None:
    """Point values of irfft2(ξ̂): mean 0, covariance the identity (all pairs of points, from
    4000 draws on an 8×8 grid: sampling error ≈ 1/√4000 ≈ 0.016)."""
    grid = grid_lib.SpectralGrid(8)
    keys = jax.random.split(jax.random.PRNGKey(3), 4000)
    fields = jax.vmap(lambda k: grid.to_physical(grid_lib.white_noise_hat(k, grid)))(keys)
    x = np.asarray(fields, np.float64).reshape(4000, 64)
    assert abs(x.mean()) < 0.01
    cov = np.cov(x, rowvar=False)
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=0.1)
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 0.08  # ≈ 5 σ of the largest of 2016 pairs
    # the same power in every mode as rfft2 of physical white noise: E|ξ̂_k|² = n²
    power = jax.vmap(lambda k: jnp.abs(grid_lib.white_noise_hat(k, grid)) ** 2)(keys)
    np.testing.assert_allclose(np.asarray(power).mean(0), 64.0, rtol=0.1)
