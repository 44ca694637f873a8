"""Closure targets: exact consistency with the full step, Π and Smagorinsky properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.physics import closures, filters
from closurejax.physics import initial_conditions as ic
from closurejax.physics import navier_stokes as ns
from closurejax.physics.grid import SpectralGrid


def state_and_key(solver: ns.Solver, seed: int = 0) -> tuple[ns.State, jax.Array]:
    omega = 3.0 * ic.gaussian_random_field(jax.random.PRNGKey(seed), solver.size, dtype=jnp.float64)
    return solver.initial_state(omega, step=17), jax.random.PRNGKey(seed + 1)


@pytest.mark.parametrize("name", ["G", "H"])
def test_closure_step_with_the_exact_term_equals_the_full_step(x64, name):
    params = ns.FlowParams(noise_sigma=0.05)  # noise large enough to matter at rounding level
    full = ns.make_solver(params, 32)
    reduced = ns.make_solver(params, 32, closure=name)
    state, key = state_and_key(full)
    exact = closures.exact_closure(full, state, key, name)
    expected = full.step(state, key)
    got = reduced.step(state, key, exact)
    scale = float(jnp.abs(expected.omega_hat).max())
    np.testing.assert_allclose(got.omega_hat, expected.omega_hat, rtol=0, atol=1e-13 * scale)
    assert int(got.step) == 18
    # and the term matters: supplying zero instead gives a different step
    wrong = reduced.step(state, key, jnp.zeros_like(exact))
    assert float(jnp.abs(wrong.omega_hat - expected.omega_hat).max()) > 1e-6 * scale


def test_g_closure_requires_the_paper_scheme():
    # G is the explicit viscous half + noise of the one-stage semi-implicit update
    with pytest.raises(ValueError, match="semi_implicit"):
        ns.make_solver(ns.FlowParams(), 32, "cn_rk4", closure="G")


def test_pi_closure_with_zero_is_the_resolved_step(x64):
    params = ns.FlowParams(noise_sigma=0.05)
    full, les = ns.make_solver(params, 32), ns.make_solver(params, 32, closure="Pi")
    state, key = state_and_key(full)
    np.testing.assert_array_equal(
        les.step(state, key, jnp.zeros((32, 32))).omega_hat, full.step(state, key).omega_hat
    )


def band_limited(n: int, kmax: int, seed: int) -> jax.Array:
    grid = SpectralGrid(n)
    w = ic.gaussian_random_field(jax.random.PRNGKey(seed), n, dtype=jnp.float64)
    kx, ky = grid.integer_wavenumbers
    mask = (np.abs(kx) <= kmax) & (np.abs(ky) <= kmax)
    return grid.to_physical(mask * grid.to_spectral(w))


def test_subgrid_term_vanishes_below_half_the_cutoff_and_not_otherwise(x64):
    grid, cutoff = SpectralGrid(64), 16
    smooth = band_limited(64, cutoff // 2, seed=0)
    pi = closures.subgrid_term(smooth, grid, "spectral", cutoff=cutoff)
    transport = float(
        jnp.abs(grid.to_physical(ns.advection_hat(grid, grid.to_spectral(smooth)))).max()
    )
    assert float(jnp.abs(pi).max()) < 1e-12 * transport
    rough = band_limited(64, 20, seed=0)
    pi_rough = closures.subgrid_term(rough, grid, "spectral", cutoff=cutoff)
    assert float(jnp.abs(pi_rough).max()) > 1e-3 * transport
    # Π is itself band-limited by the filter and coarse-grains without loss
    coarse = filters.coarse_grain(pi_rough, 32, "spectral")
    assert coarse.shape == (32, 32)


@pytest.mark.parametrize(
    "name, params", [("gaussian", {"width": 1 / 16}), ("box", {"width_points": 4})]
)
def test_subgrid_term_is_nonzero_for_smoothing_filters(x64, name, params):
    grid = SpectralGrid(64)
    pi = closures.subgrid_term(band_limited(64, 8, seed=1), grid, name, **params)
    assert float(jnp.abs(pi).max()) > 1e-6


def test_smagorinsky_is_conservative_dissipative_and_scales_with_cs_squared(x64):
    grid = SpectralGrid(32)
    omega = band_limited(32, 8, seed=2)
    pi = closures.smagorinsky(omega, grid, cs=0.16)
    assert abs(float(jnp.mean(pi))) < 1e-14  # divergence form
    assert float(jnp.mean(omega * pi)) > 0  # −Π drains enstrophy
    np.testing.assert_allclose(closures.smagorinsky(omega, grid, cs=0.32), 4 * pi, rtol=1e-12)
    with pytest.raises(ValueError, match="cs"):
        closures.smagorinsky(omega, grid, cs=0.0)


def test_unknown_closure_names_are_refused(x64):
    solver = ns.make_solver(ns.FlowParams(), 32)
    state, key = state_and_key(solver)
    with pytest.raises(ValueError, match="closure target"):
        closures.exact_closure(solver, state, key, "Q")
    with pytest.raises(ValueError, match="unknown closure"):
        ns.make_solver(ns.FlowParams(), 32, closure="Q")
    with pytest.raises(ValueError, match="filter"):
        closures.subgrid_term(jnp.zeros((32, 32)), SpectralGrid(32), "median")
