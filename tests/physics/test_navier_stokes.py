"""Physics of the vorticity solver: analytic decay, conservation, convergence order, jax-cfd."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax_cfd.spectral as cfd_spectral
import numpy as np
import pytest

from closurejax.evaluation import metrics
from closurejax.physics import initial_conditions as ic
from closurejax.physics import navier_stokes as ns
from tests.jaxpr_counts import count_work

UNFORCED = dict(forcing="none", noise_sigma=0.0)


@functools.cache
def compiled_advance(solver: ns.Solver, num_steps: int):
    return jax.jit(lambda s, key: ns.advance(solver.step, s, key, num_steps))


def run(solver: ns.Solver, omega0: jax.Array, num_steps: int, seed: int = 0) -> jax.Array:
    """Physical vorticity after `num_steps` steps from `omega0`."""
    final = compiled_advance(solver, num_steps)(
        solver.initial_state(omega0), jax.random.PRNGKey(seed)
    )
    return solver.vorticity(final)


def smooth_field(n: int, seed: int = 3, scale: float = 4.0) -> jax.Array:
    """A band-limited O(1) vorticity field (GRF projected onto the dealiased modes)."""
    solver = ns.make_solver(ns.FlowParams(**UNFORCED), n)
    w = ic.gaussian_random_field(jax.random.PRNGKey(seed), n, dtype=jnp.float64)
    return scale * solver.grid.to_physical(solver.grid.dealias_mask * solver.grid.to_spectral(w))


@pytest.mark.parametrize("stepper", ns.STEPPERS)
def test_single_fourier_mode_decays_at_the_viscous_rate(x64, stepper):
    # ω = cos 2π(3x + 2y) is a steady Euler solution (u ∥ level sets), so only ν acts:
    # ω(t) = exp(−ν(2π)²|k|²t) ω(0).
    nu, dt, steps = 1e-3, 1e-3, 1000
    solver = ns.make_solver(ns.FlowParams(viscosity=nu, dt=dt, **UNFORCED), 32, stepper)
    x, y = solver.grid.coordinates()
    omega0 = jnp.asarray(np.cos(2 * np.pi * (3 * x + 2 * y)))
    omega = run(solver, omega0, steps)
    decay = np.exp(-nu * (2 * np.pi) ** 2 * 13 * dt * steps)
    np.testing.assert_allclose(omega, decay * omega0, rtol=0, atol=1e-8)
    if stepper == "semi_implicit":  # one CN factor per step, to rounding
        h = 0.5 * dt * nu * (2 * np.pi) ** 2 * 13
        exact = ((1 - h) / (1 + h)) ** steps * omega0
        np.testing.assert_allclose(omega, exact, rtol=0, atol=1e-12)


def test_inviscid_run_conserves_energy_and_enstrophy(x64):
    params = ns.FlowParams(viscosity=0.0, dt=2e-3, **UNFORCED)
    omega0 = smooth_field(32)
    e0, z0 = metrics.energy(omega0), metrics.enstrophy(omega0)
    # CN-RK4: conserved up to its O(dt⁴) error
    omega = run(ns.make_solver(params, 32, "cn_rk4"), omega0, 250)
    assert abs(metrics.energy(omega) / e0 - 1) < 1e-9
    assert abs(metrics.enstrophy(omega) / z0 - 1) < 1e-9
    assert float(metrics.relative_error(omega, omega0)) > 0.1  # the flow did evolve
    # the papers' explicit-Euler scheme: O(dt) drift, stated tolerance
    omega = run(ns.make_solver(params, 32, "semi_implicit"), omega0, 250)
    assert abs(metrics.energy(omega) / e0 - 1) < 2e-3
    assert abs(metrics.enstrophy(omega) / z0 - 1) < 2e-3


def convergence_order(stepper: str, params_kw: dict, dts: list[float], t_end: float) -> float:
    omega0 = smooth_field(32)
    ref_dt = dts[-1] / 8
    ref_params = ns.FlowParams(dt=ref_dt, **params_kw)
    reference = run(ns.make_solver(ref_params, 32, "cn_rk4"), omega0, round(t_end / ref_dt))
    errors = []
    for dt in dts:
        solver = ns.make_solver(ns.FlowParams(dt=dt, **params_kw), 32, stepper)
        errors.append(
            float(metrics.relative_error(run(solver, omega0, round(t_end / dt)), reference))
        )
    slopes = np.diff(np.log(errors)) / np.diff(np.log(dts))
    return float(np.mean(slopes))


def test_semi_implicit_scheme_is_first_order(x64):
    kw = dict(viscosity=1e-2, forcing="diagonal", noise_sigma=0.0)
    order = convergence_order("semi_implicit", kw, [4e-3, 2e-3, 1e-3], t_end=0.4)
    assert 0.9 < order < 1.15, order


def test_cn_rk4_is_fourth_order_in_the_explicit_terms(x64):
    # inviscid, so the CN (second-order) part is inactive and RK4 shows
    kw = dict(viscosity=0.0, forcing="diagonal", noise_sigma=0.0)
    order = convergence_order("cn_rk4", kw, [0.04, 0.02, 0.01], t_end=0.8)
    assert 3.7 < order < 4.3, order


def test_cn_rk4_matches_jax_cfd_navier_stokes_2d(x64):
    n, nu, drag, dt = 32, 1e-3, 0.1, 1e-2
    params = ns.FlowParams(viscosity=nu, drag=drag, dt=dt, dealias="brick_wall", **UNFORCED)
    solver = ns.make_solver(params, n, "cn_rk4")
    omega0 = smooth_field(n)
    ours = run(solver, omega0, 50)
    cfd_eq = cfd_spectral.equations.NavierStokes2D(nu, solver.grid.cfd_grid, drag=drag, smooth=True)
    cfd_step = cfd_spectral.time_stepping.crank_nicolson_rk4(cfd_eq, dt)
    theirs_hat = jax.jit(lambda w: jax.lax.fori_loop(0, 50, lambda _, s: cfd_step(s), w))(
        jnp.fft.rfftn(omega0)
    )
    theirs = jnp.fft.irfftn(theirs_hat)
    assert float(metrics.relative_error(theirs, omega0)) > 0.05  # not a trivial comparison
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * float(jnp.abs(theirs).max()))


def test_same_seed_is_bit_identical_and_different_seeds_differ():
    solver = ns.make_solver(ns.FlowParams(noise_sigma=5e-2), 32)
    omega0 = ic.gaussian_random_field(jax.random.PRNGKey(0), 32)
    a, b = run(solver, omega0, 20, seed=1), run(solver, omega0, 20, seed=1)
    c = run(solver, omega0, 20, seed=2)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.max(jnp.abs(a - c))) > 1e-4


def test_vmap_over_initial_conditions_equals_single_runs():
    solver = ns.make_solver(ns.FlowParams(), 32)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    omega0 = jax.vmap(lambda k: ic.gaussian_random_field(k, 32))(keys)
    run_keys = jax.random.split(jax.random.PRNGKey(1), 3)
    batched = jax.jit(jax.vmap(lambda s, k: ns.advance(solver.step, s, k, 10)))(
        solver.initial_state(omega0), run_keys
    )
    single = compiled_advance(solver, 10)
    for i in range(3):
        out = single(solver.initial_state(omega0[i]), run_keys[i])
        np.testing.assert_allclose(batched.omega_hat[i], out.omega_hat, rtol=1e-5, atol=1e-5)


def test_rollout_snapshots_match_advance_and_resume_is_exact():
    solver = ns.make_solver(ns.FlowParams(noise_sigma=1e-2), 32)
    state = solver.initial_state(ic.gaussian_random_field(jax.random.PRNGKey(0), 32))
    key = jax.random.PRNGKey(5)
    final, obs = jax.jit(
        lambda s: ns.rollout(
            solver.step, s, key, 4, 3, lambda st, k: (st.step, solver.vorticity(st))
        )
    )(state)
    steps, fields = obs
    assert steps.tolist() == [0, 3, 6, 9] and int(final.step) == 9
    # observation 2 equals advancing 6 steps directly; splitting the run changes nothing
    direct = jax.jit(lambda s: ns.advance(solver.step, s, key, 6))(state)
    np.testing.assert_array_equal(fields[2], solver.vorticity(direct))
    two_halves = jax.jit(lambda s: ns.advance(solver.step, s, key, 3))
    np.testing.assert_array_equal(solver.vorticity(two_halves(two_halves(state))), fields[2])


def test_diagonal_forcing_is_papers_formula():
    solver = ns.make_solver(ns.FlowParams(noise_sigma=0.0), 16)
    x, y = solver.grid.coordinates()
    expected = 0.1 * (np.sin(2 * np.pi * (x + y)) + np.cos(2 * np.pi * (x + y)))
    np.testing.assert_allclose(np.fft.irfft2(solver.forcing_hat, s=(16, 16)), expected, atol=1e-12)


def test_kolmogorov_forcing_with_drag_reaches_the_laminar_balance(x64):
    # steady laminar state of the Kolmogorov flow: (νq² + μ)ω = f_ω, f_ω = −a q cos(q y)
    params = ns.FlowParams(
        viscosity=0.05,
        drag=0.5,
        dt=5e-3,
        forcing="kolmogorov",
        forcing_wavenumber=1,
        forcing_amplitude=0.2,
        noise_sigma=0.0,
    )
    solver = ns.make_solver(params, 16)
    omega = run(solver, jnp.zeros((16, 16)), 4000)
    q = 2 * np.pi
    _, y = solver.grid.coordinates()
    expected = -0.2 * q * np.cos(q * y) / (0.05 * q**2 + 0.5)
    np.testing.assert_allclose(omega, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("stepper", "closure"),
    [(s, c) for s in ns.STEPPERS for c in ns.CLOSURES if c != "G" or s == "semi_implicit"],
)
def test_step_cost_counts_the_work_the_step_does(stepper: str, closure: str) -> None:
    """`Solver.step_cost` is what the traced step does: rfft2/irfft2 fields and normals drawn
    (closure G exists for the semi-implicit scheme only)."""
    params = ns.FlowParams(noise_modes=5)
    solver = ns.make_solver(params, 16, stepper=stepper, closure=closure)
    state = solver.initial_state(jnp.zeros((16, 16)))
    key = jax.random.PRNGKey(0)
    args = (state, key) if closure == "none" else (state, key, jnp.zeros((16, 16)))
    cost = solver.step_cost
    assert count_work(solver.step, *args) == cost._asdict()
    stages = {"semi_implicit": 1, "cn_rk4": 5}[stepper]
    advects = closure != "H"  # H replaces advection (and the noise), G the viscous term and noise
    assert cost.inverse == 4 * stages * advects
    noisy = closure in ("none", "Pi")
    assert cost.normals == (2 * 11 * 11 if noisy else 0)  # the band |k| ≤ 5, re and im
    assert (solver.ffts_forward_per_step, solver.ffts_inverse_per_step) == (
        cost.forward,
        cost.inverse,
    )
    if closure != "none":  # given spectrally, the closure needs no transform
        hat_args = (state, key, jnp.zeros(solver.grid.rfft_shape, jnp.complex64))
        assert count_work(solver.step_hat, *hat_args)["forward"] == cost.forward - 1


@pytest.mark.parametrize("closure", ["H", "G", "Pi"])
def test_step_hat_equals_step_with_the_transformed_closure(closure: str) -> None:
    solver = ns.make_solver(ns.FlowParams(noise_modes=5), 16, closure=closure)
    state = solver.initial_state(ic.gaussian_random_field(jax.random.PRNGKey(0), 16))
    field = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (16, 16))
    key = jax.random.PRNGKey(2)
    a = jax.jit(solver.step)(state, key, field)
    b = jax.jit(solver.step_hat)(state, key, solver.grid.to_spectral(field))
    np.testing.assert_array_equal(a.omega_hat, b.omega_hat)
    with pytest.raises(ValueError, match="needs a closure field"):
        solver.step_hat(state, key)


def test_members_advanced_in_slices_equal_the_vmapped_batch_bit_for_bit() -> None:
    solver = ns.make_solver(ns.FlowParams(noise_modes=5), 16)
    omega = jax.vmap(lambda k: ic.gaussian_random_field(k, 16))(
        jax.random.split(jax.random.PRNGKey(0), 5)
    )
    states, keys = solver.initial_state(omega), jax.random.split(jax.random.PRNGKey(1), 5)

    def run(s: ns.State, k: jax.Array) -> ns.State:
        return ns.advance(solver.step, s, k, 7)

    batched = jax.jit(jax.vmap(run))(states, keys)
    for slice_size in (1, 2, None):  # 2: two slices and a remainder of one
        sliced = jax.jit(lambda s, k, n=slice_size: ns.map_members(run, n, s, k))(states, keys)
        np.testing.assert_array_equal(sliced.omega_hat, batched.omega_hat)
        np.testing.assert_array_equal(sliced.step, batched.step)
    # slicing runs the members' time loops inside one loop over slices; None is one vmap
    sliced = str(jax.make_jaxpr(lambda s, k: ns.map_members(run, 2, s, k))(states, keys))
    whole = str(jax.make_jaxpr(lambda s, k: ns.map_members(run, None, s, k))(states, keys))
    assert sliced.count("scan[") > whole.count("scan[")


def test_members_per_slice_keeps_a_slice_within_the_cache() -> None:
    # float32: 8 arrays of n² × 4 bytes per field against 2 MiB
    assert ns.members_per_slice(256, backend="cpu") == 1
    assert ns.members_per_slice(128, backend="cpu") == 4
    assert ns.members_per_slice(64, backend="cpu") == 16
    assert ns.members_per_slice(128, jnp.float64, backend="cpu") == 2
    assert ns.members_per_slice(64, backend="gpu") is None
