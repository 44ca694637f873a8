"""The smooth stochastic forcing: spectrum, 1/dt variance scaling, grid independence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.physics.forcing import StochasticForcing
from closurejax.physics.grid import SpectralGrid

PAPER = dict(sigma=5e-5, alpha=0.005, kappa=10, modes=12)


def draws(noise: StochasticForcing, grid: SpectralGrid, count: int, seed: int = 0) -> jax.Array:
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    return jax.jit(jax.vmap(lambda k: noise.white_noise_hat(k, grid)))(keys)


def test_noise_has_the_specified_spatial_spectrum():
    grid = SpectralGrid(32)
    noise = StochasticForcing(dt=1e-3, **PAPER)
    samples = draws(noise, grid, 4000)
    measured = np.mean(np.abs(np.asarray(samples)) ** 2, axis=0)
    expected = noise.expected_power(grid)
    band = expected > 0
    # E|Ŵ_k|² = κ b_k²/dt² with b_k ∝ exp(−α|2πk|²/2); each mode's |Ŵ_k|² is a scaled χ² with
    # 2 degrees of freedom (1 for the real-only mean mode): 4000 draws give ≲ 2.3 % (≲ 5 % mean)
    ratio = measured[band] / expected[band]
    assert np.all(np.abs(ratio - 1) < 0.12), ratio.min()
    assert abs(ratio.mean() - 1) < 0.01
    assert np.all(measured[~band] == 0)
    # and the spectrum really decays like exp(−α|2πk|²): mode (5, 0) vs (1, 0)
    decay = np.exp(-0.005 * (2 * np.pi) ** 2 * (25 - 1))
    assert abs(measured[5, 0] / measured[1, 0] / decay - 1) < 0.15


def test_noise_variance_scales_as_one_over_dt_with_a_fixed_seed():
    grid = SpectralGrid(32)
    key = jax.random.PRNGKey(7)
    coarse = StochasticForcing(dt=1e-3, **PAPER).white_noise_hat(key, grid)
    fine = StochasticForcing(dt=2.5e-4, **PAPER).white_noise_hat(key, grid)
    # same ξ, amplitude ∝ √dt/dt: Ŵ(dt/4) = 2·Ŵ(dt) exactly, i.e. variance ×4
    np.testing.assert_allclose(fine, 2.0 * coarse, rtol=1e-6)
    assert float(jnp.mean(jnp.abs(fine) ** 2) / jnp.mean(jnp.abs(coarse) ** 2)) == np.float32(4.0)


def test_noise_is_the_same_field_on_every_grid_for_a_key():
    noise = StochasticForcing(dt=1e-3, **PAPER)
    key = jax.random.PRNGKey(3)
    g64, g32 = SpectralGrid(64), SpectralGrid(32)
    w64 = g64.to_physical(noise.white_noise_hat(key, g64))
    w32 = g32.to_physical(noise.white_noise_hat(key, g32))
    np.testing.assert_allclose(w64[::2, ::2], w32, atol=1e-5 * float(jnp.abs(w32).max()))
    # a real, mean-free-in-expectation field with the Parseval variance κ/(L²dt)·Σ e^{−α|2πk|²}
    assert w64.dtype == jnp.float32


def test_pointwise_variance_matches_parseval():
    grid = SpectralGrid(32)
    noise = StochasticForcing(dt=1e-3, **PAPER)
    fields = grid.to_physical(draws(noise, grid, 2000, seed=1))
    k = np.arange(-12, 13)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    expected = 10 / 1e-3 * np.sum(np.exp(-0.005 * (2 * np.pi) ** 2 * (kx**2 + ky**2)))
    assert abs(float(jnp.var(fields)) / expected - 1) < 0.05
