"""Diagnostics and ensemble scores against analytic values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.evaluation import metrics
from closurejax.physics.grid import SpectralGrid


def test_energy_and_spectrum_of_a_single_mode():
    # ω = cos(2π·3x): ψ = ω/(2π·3)², v = −∂ψ/∂x = sin(2π·3x)/(2π·3); E = ½⟨v²⟩ = 1/(4(6π)²)
    x, _ = SpectralGrid(32).coordinates()
    omega = jnp.asarray(np.cos(2 * np.pi * 3 * x))
    expected = 1 / (4 * (6 * np.pi) ** 2)
    np.testing.assert_allclose(metrics.energy(omega), expected, rtol=1e-5)
    spectrum = metrics.energy_spectrum(omega)
    np.testing.assert_allclose(spectrum[3], expected, rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(spectrum), expected, rtol=1e-5)
    np.testing.assert_allclose(metrics.enstrophy(omega), 0.25, rtol=1e-6)


def test_crps_matches_the_direct_pair_formula_and_the_gaussian_closed_form():
    key = jax.random.PRNGKey(0)
    ensemble = jax.random.normal(key, (7, 3, 4, 4))
    truth = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 4))
    direct_skill = jnp.mean(jnp.abs(ensemble - truth), axis=0)
    pairs = jnp.abs(ensemble[:, None] - ensemble[None, :]).sum(axis=(0, 1)) / (7 * 6)
    direct = jnp.mean(direct_skill - 0.5 * pairs, axis=(-2, -1))
    np.testing.assert_allclose(metrics.crps(ensemble, truth), direct, rtol=1e-5)
    # large ensemble from N(0,1), truth 0: CRPS → (√2 − 1)/√π
    big = jax.random.normal(key, (4000, 8, 8))
    np.testing.assert_allclose(
        metrics.crps(big, jnp.zeros((8, 8))), (np.sqrt(2) - 1) / np.sqrt(np.pi), rtol=0.03
    )
    # one member: mean absolute error
    np.testing.assert_allclose(
        metrics.crps(ensemble[:1], truth), jnp.mean(jnp.abs(ensemble[0] - truth), axis=(-2, -1))
    )


def test_spread_skill_ratio_is_one_for_a_calibrated_ensemble():
    key1, key2 = jax.random.split(jax.random.PRNGKey(3))
    # truth and members drawn from the same law around a common mean: calibrated
    mean = jnp.zeros((200, 16, 16))
    truth = mean + jax.random.normal(key1, (200, 16, 16))
    members = mean + jax.random.normal(key2, (10, 200, 16, 16))
    ratio = float(jnp.mean(metrics.spread_skill_ratio(members, truth)))
    assert abs(ratio - 1) < 0.03
    # an under-dispersed ensemble scores well below 1
    assert float(jnp.mean(metrics.spread_skill_ratio(0.3 * members, truth))) < 0.5


def test_relative_error_and_mse():
    truth = jnp.ones((2, 4, 4))
    np.testing.assert_allclose(metrics.relative_error(1.1 * truth, truth), 0.1, rtol=1e-5)
    np.testing.assert_allclose(metrics.relative_error(jnp.zeros_like(truth), truth), 1.0)
    np.testing.assert_allclose(metrics.mse(truth + 0.5, truth), 0.25)
