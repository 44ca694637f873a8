"""The fused online step: exactness with the exact closure, sampling schedule, keys, ensembles,
blow-up detection and the learned closure sources (arXiv 2408.02965, online use)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.data import sparse
from closurejax.diffusion import conditional, kinds
from closurejax.parallel import data_mesh
from closurejax.physics import initial_conditions as ic
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled
from experiments.configs.demo import get_config
from tests.jaxpr_counts import count_work

N = 16
PARAMS = ns.FlowParams(noise_sigma=0.05, noise_modes=4)


def initial_state(solver: ns.Solver, seed: int = 0, step: int = 0) -> ns.State:
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    omega = 3.0 * ic.gaussian_random_field(jax.random.PRNGKey(seed), N, dtype=dtype)
    return solver.initial_state(omega, step=step)


def full_trajectory(state: ns.State, key: jax.Array, num_steps: int, save_every: int) -> jax.Array:
    full = ns.make_solver(PARAMS, N)
    _, snaps = ns.rollout(
        full.step,
        state,
        key,
        num_steps // save_every + 1,
        save_every,
        lambda s, _: full.vorticity(s),
    )
    return snaps


@pytest.mark.parametrize("target", ["H", "G"])
def test_exact_closure_reproduces_the_full_solver(x64, target):
    solver = ns.make_solver(PARAMS, N, closure=target)
    state, key = initial_state(solver, step=3), jax.random.PRNGKey(7)
    step = coupled.make_coupled_step(solver, coupled.ExactClosure(solver, target), 1, 0.0)
    final, snaps, report = coupled.rollout(step, coupled.initial_carry(solver, state), key, 12, 4)
    expected = full_trajectory(state, key, 12, 4)
    assert snaps.shape == (4, N, N) and snaps.dtype == jnp.float64
    scale = float(jnp.abs(expected).max())
    np.testing.assert_allclose(snaps, expected, rtol=0, atol=1e-12 * scale)
    assert int(final.state.step) == 15 and int(report["first_nonfinite_step"]) == -1
    # sanity: the "without closure" run (zero term) departs from the reference
    step0 = coupled.make_coupled_step(solver, coupled.NoClosure(), 1, 0.0)
    _, snaps0, _ = coupled.rollout(step0, coupled.initial_carry(solver, state), key, 12, 4)
    assert float(jnp.abs(snaps0[-1] - expected[-1]).max()) > 1e-3 * scale


class UniformMarker:
    """A source returning uniform(key) (a step-dependent marker) and counting its calls."""

    kind = "marker"
    params = None

    def __init__(self) -> None:
        self.calls = 0

    def _count(self) -> None:
        self.calls += 1

    def closure(self, params, key, omega, context):
        jax.debug.callback(self._count)
        return 1e-3 * jax.random.uniform(key, omega.shape, omega.dtype)


def test_closure_is_sampled_every_k_steps_only():
    solver = ns.make_solver(PARAMS, N, closure="H")
    source = UniformMarker()
    key = jax.random.PRNGKey(1)
    step = coupled.make_coupled_step(solver, source, every=5, reuse_noise=0.0)
    carry = coupled.initial_carry(solver, initial_state(solver))
    final, snaps, _ = coupled.rollout(step, carry, key, 12, 3)
    jax.block_until_ready(final)
    assert source.calls == 3  # steps 0, 5, 10: the cond runs the sampler on those steps only
    last = 1e-3 * jax.random.uniform(jax.random.fold_in(key, 10), (N, N))
    np.testing.assert_allclose(solver.grid.to_physical(final.sample_hat), last, atol=1e-9)
    np.testing.assert_array_equal(final.closure_hat, final.sample_hat)
    assert snaps.shape == (5, N, N)


def test_reuse_noise_is_fresh_each_step_and_not_accumulated():
    solver = ns.make_solver(PARAMS, N, closure="H")
    step = coupled.make_coupled_step(solver, UniformMarker(), every=5, reuse_noise=1e-2)
    key = jax.random.PRNGKey(4)
    carry = coupled.initial_carry(solver, initial_state(solver))
    carry = step(carry, ns.step_key(key, carry.state))  # step 0: a fresh sample, no noise
    np.testing.assert_array_equal(carry.closure_hat, carry.sample_hat)
    sample, deviations = carry.sample_hat, []
    for _ in range(3):  # steps 1-3 reuse the sample plus N(0, 1e-2²) at every grid point
        carry = step(carry, ns.step_key(key, carry.state))
        np.testing.assert_array_equal(carry.sample_hat, sample)
        deviations.append(solver.grid.to_physical(carry.closure_hat - sample))
    d = jnp.stack(deviations)  # 3 × 256 point values
    assert 0.9e-2 < float(jnp.std(d)) < 1.1e-2 and abs(float(jnp.mean(d))) < 1e-3
    assert float(jnp.abs(deviations[0] - deviations[1]).max()) > 1e-3


def test_ensemble_members_equal_independent_runs_and_keep_the_cond():
    solver = ns.make_solver(PARAMS, N, closure="H")
    step = coupled.make_coupled_step(solver, coupled.ExactClosure(solver, "H"), 3, 1e-2)
    states = [initial_state(solver, seed) for seed in range(3)]
    carry = coupled.initial_carry(solver, jax.tree.map(lambda *a: jnp.stack(a), *states))
    key = jax.random.PRNGKey(5)
    final, snaps, report = coupled.ensemble_rollout(step, carry, key, 8, 4)
    assert snaps.shape == (3, 3, N, N) and report["first_nonfinite_step"].shape == (3,)
    for m, state in enumerate(states):
        single = coupled.initial_carry(solver, state)
        f_m, s_m, _ = coupled.rollout(step, single, jax.random.fold_in(key, m), 8, 4)
        np.testing.assert_allclose(snaps[m], s_m, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(final.closure_hat[m], f_m.closure_hat, rtol=1e-5, atol=1e-4)
    # the sample/reuse switch stays a branch under vmap (no select running the sampler always)
    jaxpr = str(jax.make_jaxpr(lambda c: coupled.ensemble_rollout(step, c, key, 8, 4)[1])(carry))
    assert "cond[" in jaxpr
    # sharded over a ("data",) mesh: same result
    _, sharded, _ = coupled.ensemble_rollout(step, carry, key, 8, 4, mesh=data_mesh())
    np.testing.assert_allclose(sharded, snaps, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("every, save_every", [(5, 10), (5, 5), (3, 6), (1, 4)])
def test_schedule_of_a_save_block_is_the_sampling_pattern(every, save_every):
    for phase in range(every):
        lead, blocks, tail = coupled._schedule(phase, save_every, every)
        flags = [False] * lead + ([True] + [False] * (every - 1)) * blocks
        flags += ([True] + [False] * (tail - 1)) if tail else []
        assert flags == [(phase + o) % every == 0 for o in range(save_every)]


def _both_paths(step, carry, keys, reference, num_steps, save_every, ensemble=True):
    """`_run` per step (phase None: the lax.cond and the guard at every step) and in scheduled
    save blocks (the phase of the carry's first step counter)."""
    phase = coupled.phase_of(step, carry)
    assert phase is not None
    args = (step, carry, keys, reference, num_steps, save_every, ensemble)
    return coupled._run(*args, None), coupled._run(*args, phase)


def _assert_same(per_step, scheduled):
    """Equal reports; equal fields to float rounding (the same arithmetic, which XLA may fuse
    differently in the two structures: one ulp in one mode of a single-member run seen)."""
    np.testing.assert_array_equal(per_step[2], scheduled[2])
    for a, b in zip(jax.tree.leaves(per_step[:2]), jax.tree.leaves(scheduled[:2]), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6 * max(np.abs(a).max(), 1e-30))
        else:
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("start", [0, 2, 4])
def test_scheduled_save_blocks_equal_the_per_step_path(start):
    """No-closure run with reuse noise, and a reference closure from the context (every = 5,
    save blocks of 10 steps, 3 members, the first step counter at each phase)."""
    solver = ns.make_solver(PARAMS, N, closure="H")
    states = [initial_state(solver, seed, step=start) for seed in range(3)]
    carry = coupled.initial_carry(solver, jax.tree.map(lambda *a: jnp.stack(a), *states))
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    none = coupled.make_coupled_step(solver, coupled.NoClosure(), 5, 5e-2)
    _assert_same(*_both_paths(none, carry, keys, {}, 20, 10))
    marker = 0.1 * jax.random.normal(jax.random.PRNGKey(6), (20, N, N))
    ref = coupled.make_coupled_step(solver, coupled.ReferenceClosure("marker"), 5, 1e-2)
    per_step, scheduled = _both_paths(ref, carry, keys, {"marker": marker}, 20, 10)
    _assert_same(per_step, scheduled)
    assert int(jnp.max(scheduled[2])) == -1  # all finite: the fast path stood
    # single-member rollouts take the same path
    single = jax.tree.map(lambda a: a[0], carry)
    _assert_same(*_both_paths(ref, single, keys[0], {"marker": marker}, 20, 10, ensemble=False))


def test_a_blow_up_inside_a_scheduled_block_is_replayed_step_by_step():
    """A reference closure infinite from step 13 on, applied at the sampling step 15 (inside the
    second save block of 10): the block is run again with the per-step guard, so the report and
    the frozen carry are the per-step path's, and the third block keeps the members frozen."""
    solver = ns.make_solver(PARAMS, N, closure="H")
    states = [initial_state(solver, seed) for seed in range(2)]
    carry = coupled.initial_carry(solver, jax.tree.map(lambda *a: jnp.stack(a), *states))
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    step = coupled.make_coupled_step(solver, coupled.ReferenceClosure("marker"), 5, 1e-2)
    marker = jnp.zeros((30, N, N)).at[13:].set(jnp.inf)
    per_step, scheduled = _both_paths(step, carry, keys, {"marker": marker}, 30, 10)
    _assert_same(per_step, scheduled)
    np.testing.assert_array_equal(scheduled[2], [15, 15])  # the first sampling step after 13
    assert bool(jnp.all(jnp.isfinite(scheduled[1])))
    np.testing.assert_array_equal(scheduled[1][:, 2], scheduled[1][:, 3])  # frozen from 15 on


def test_same_seed_same_rollout_different_seed_different():
    solver = ns.make_solver(PARAMS, N, closure="Pi")
    step = coupled.make_coupled_step(solver, coupled.Smagorinsky(solver.grid), 5, 5e-5)
    carry = coupled.initial_carry(solver, initial_state(solver))
    _, a, _ = coupled.rollout(step, carry, jax.random.PRNGKey(0), 6, 3)
    _, b, _ = coupled.rollout(step, carry, jax.random.PRNGKey(0), 6, 3)
    _, c, _ = coupled.rollout(step, carry, jax.random.PRNGKey(1), 6, 3)
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a[-1] - c[-1]).max()) > 1e-6
    assert bool(jnp.all(jnp.isfinite(a)))


def test_blow_up_is_reported_and_the_last_finite_state_kept():
    solver = ns.make_solver(PARAMS, N, closure="H")
    step = coupled.make_coupled_step(solver, coupled.ReferenceClosure("marker"), 1, 0.0)
    carry = coupled.initial_carry(solver, initial_state(solver, step=2))
    key = jax.random.PRNGKey(2)
    marker = jnp.zeros((10, N, N)).at[5:].set(jnp.inf)  # rollout step 5 = state step 7
    final, snaps, report = coupled.rollout(step, carry, key, 10, 2, {"marker": marker})
    assert int(report["first_nonfinite_step"]) == 7
    assert int(final.state.step) == 7
    clean, clean_snaps, clean_report = coupled.rollout(
        step, carry, key, 10, 2, {"marker": jnp.zeros((10, N, N))}
    )
    assert int(clean_report["first_nonfinite_step"]) == -1
    # the state after 5 rollout steps (step 7) is kept; snapshots freeze there
    np.testing.assert_array_equal(snaps[:3], clean_snaps[:3])
    after5 = coupled.rollout(step, carry, key, 5, 5, {"marker": marker[:5]})[0]
    np.testing.assert_array_equal(final.state.omega_hat, after5.state.omega_hat)
    np.testing.assert_array_equal(snaps[3], solver.vorticity(after5.state))
    np.testing.assert_array_equal(snaps[5], snaps[3])
    assert bool(jnp.all(jnp.isfinite(snaps)))
    # a huge but finite closure blows the resolved (Pi) dynamics up a step later
    les = ns.make_solver(PARAMS, N, closure="Pi")
    huge = jnp.zeros((10, N, N)).at[5:].set(1e30 * jnp.cos(2 * jnp.pi * jnp.arange(N) / N))
    pi_step = coupled.make_coupled_step(les, coupled.ReferenceClosure("marker"), 1, 0.0)
    carry = coupled.initial_carry(les, initial_state(les, step=2))
    final, snaps, report = coupled.rollout(pi_step, carry, key, 10, 2, {"marker": huge})
    bad = int(report["first_nonfinite_step"])
    assert 7 <= bad <= 9 and int(final.state.step) == bad
    assert bool(jnp.all(jnp.isfinite(final.state.omega_hat)))


def tiny_model(kind: str) -> kinds.Model:
    config = get_config().to_dict()
    config["model"].update(width=4, modes=2, depth=1, embed_dim=8, kind=kind)
    config["sampler"]["num_steps"] = 2
    stats = {n: {"mean": 0.0, "std": 1.0} for n in ("omega", "sparse_interpolated", "target")}
    return kinds.from_config(config, stats)


@pytest.mark.parametrize("kind", ["regression", "score"])
def test_learned_sources_run_under_jit(kind):
    model = tiny_model(kind)
    params = model.init(jax.random.PRNGKey(0), N)
    if kind == "regression":
        source = coupled.RegressionClosure(model, params)
    else:
        sampler = conditional.sampler_from_config(get_config().sampler, num_steps=2)
        source = coupled.DiffusionClosure(model, params, sampler)
    solver = ns.make_solver(PARAMS, N, closure="H")
    step = coupled.make_coupled_step(solver, source, every=2)
    carry = coupled.initial_carry(solver, initial_state(solver))
    fields = jax.random.normal(jax.random.PRNGKey(3), (4, N, N))
    reference = {"sparse_interpolated": sparse.encode(fields, 4, "interpolated")}
    final, snaps, report = coupled.rollout(step, carry, jax.random.PRNGKey(1), 4, 2, reference)
    assert snaps.shape == (3, N, N) and final.closure_hat.shape == (N, N // 2 + 1)
    assert bool(jnp.all(jnp.isfinite(snaps))) and bool(jnp.all(jnp.isfinite(final.closure_hat)))
    assert int(report["first_nonfinite_step"]) == -1
    assert float(jnp.abs(final.sample_hat).max()) > 0  # the model supplied a field
    if kind == "score":  # one sample per call: other keys, other samples
        other = coupled.rollout(step, carry, jax.random.PRNGKey(2), 4, 2, reference)[0]
        assert float(jnp.abs(other.sample_hat - final.sample_hat).max()) > 1e-6
    with pytest.raises(ValueError, match="sparse_interpolated"):
        coupled.rollout(step, carry, jax.random.PRNGKey(1), 4, 2, None)


def test_diffusion_ensemble_folds_members_into_the_network_batch_and_equals_member_runs():
    """The vmapped members run the network as one batched call in slices (fold_vmap), with the
    same samples as member-by-member runs."""
    model = dataclasses.replace(tiny_model("score"), batch_chunk=2)  # 3 members: 2 + remainder 1
    sampler = conditional.sampler_from_config(get_config().sampler, num_steps=2)
    source = coupled.DiffusionClosure(model, model.init(jax.random.PRNGKey(0), N), sampler)
    solver = ns.make_solver(PARAMS, N, closure="H")
    step = coupled.make_coupled_step(solver, source, every=2, reuse_noise=1e-4)
    states = [initial_state(solver, seed) for seed in range(3)]
    carry = coupled.initial_carry(solver, jax.tree.map(lambda *a: jnp.stack(a), *states))
    fields = jax.random.normal(jax.random.PRNGKey(3), (4, N, N))
    reference = {"sparse_interpolated": sparse.encode(fields, 4, "interpolated")}
    key = jax.random.PRNGKey(8)
    final, snaps, _ = coupled.ensemble_rollout(step, carry, key, 4, 2, reference)
    for m, state in enumerate(states):
        single = coupled.initial_carry(solver, state)
        f_m, s_m, _ = coupled.rollout(step, single, jax.random.fold_in(key, m), 4, 2, reference)
        np.testing.assert_allclose(snaps[m], s_m, rtol=1e-5, atol=1e-5)
        scale = float(jnp.abs(f_m.sample_hat).max())
        np.testing.assert_allclose(final.sample_hat[m], f_m.sample_hat, rtol=0, atol=1e-4 * scale)
    # the network saw slices [width, 2, n, n] of the 3 members, not a vmapped [3, width, 1, n, n]
    rollout = functools.partial(coupled.ensemble_rollout, step, key=key, num_steps=4, save_every=2)
    text = str(jax.make_jaxpr(lambda c: rollout(c, reference=reference)[1])(carry))
    assert "f32[4,2,16,16]" in text and "f32[3,4,1,16,16]" not in text


@dataclasses.dataclass(frozen=True)
class KeyEcho:
    """A stand-in diffusion model whose "sample" is a normal draw of the sampler key: the
    conditions are ignored, so equal samples mean equal sampler keys."""

    kind: str = "score"
    condition_names: tuple[str, ...] = ("omega",)

    def sample(self, params, key, cond, sampler):
        return 1e-3 * jax.random.normal(key, cond["omega"].shape, cond["omega"].dtype)


@pytest.mark.parametrize("noise", ["fresh", "member"])
def test_sampler_noise_member_draws_once_per_member_fresh_at_every_sampling_step(noise):
    solver = ns.make_solver(PARAMS, N, closure="H")
    source = coupled.DiffusionClosure(KeyEcho(), None, None)
    step = coupled.make_coupled_step(solver, source, 2, 0.0, sampler_noise=noise)
    carry = coupled.initial_carry(solver, initial_state(solver))
    members = jax.tree.map(lambda a: jnp.stack([a, a]), carry)
    key = jax.random.PRNGKey(6)
    samples = []
    for steps in (2, 4):  # the sample of step 0, then that of step 2 (0 and 2 are sampling steps)
        final, _, _ = coupled.ensemble_rollout(step, members, key, steps, 1)
        samples.append(np.asarray(final.sample_hat))
    first, second = samples
    assert np.abs(first[0] - first[1]).max() > 1e-4  # members differ in either mode
    if noise == "member":  # the same draw at every sampling step of a member
        np.testing.assert_array_equal(first, second)
        member_key = jax.random.fold_in(key, 1)
        expected = 1e-3 * jax.random.normal(
            jax.random.fold_in(jax.random.split(member_key)[1], coupled._SAMPLER_STREAM), (1, N, N)
        )
        np.testing.assert_allclose(
            solver.grid.to_physical(second[1]), expected[0], rtol=0, atol=1e-6
        )
    else:  # a new draw at every sampling step (the papers)
        assert np.abs(first - second).max() > 1e-4
    with pytest.raises(ValueError, match="member_key"):
        coupled.make_coupled_step(solver, source, 2, 0.0, sampler_noise="member")(
            carry, jax.random.PRNGKey(0)
        )


def test_invalid_configurations_are_rejected():
    h = ns.make_solver(PARAMS, N, closure="H")
    none = ns.make_solver(PARAMS, N)
    with pytest.raises(ValueError, match="every"):
        coupled.make_coupled_step(h, coupled.NoClosure(), every=0)
    with pytest.raises(ValueError, match="target"):
        coupled.make_coupled_step(h, coupled.ExactClosure(h, "G"))
    with pytest.raises(ValueError, match="Pi"):
        coupled.make_coupled_step(h, coupled.Smagorinsky(h.grid))
    with pytest.raises(ValueError, match="closure='none'"):
        coupled.make_coupled_step(none, coupled.ExactClosure(h, "H"))
    with pytest.raises(ValueError, match=r"kind \('score', 'latent'\), got 'regression'"):
        coupled.DiffusionClosure(tiny_model("regression"), None, None)
    with pytest.raises(ValueError, match="sampler_noise='member' .* 'exact'.* use 'fresh'"):
        coupled.make_coupled_step(h, coupled.ExactClosure(h, "H"), sampler_noise="member")
    with pytest.raises(ValueError, match="sampler_noise='once' is invalid"):
        coupled.make_coupled_step(h, coupled.NoClosure(), sampler_noise="once")
    step = coupled.make_coupled_step(h, coupled.NoClosure(), 1, 0.0)
    carry = coupled.initial_carry(h, initial_state(h))
    with pytest.raises(ValueError, match="multiple"):
        coupled.rollout(step, carry, jax.random.PRNGKey(0), 5, 2)
    with pytest.raises(ValueError, match="shape"):
        coupled.rollout(step, carry, jax.random.PRNGKey(0), 4, 2, {"x": jnp.zeros((3, N, N))})
    with pytest.raises(ValueError, match="ensemble_rollout"):
        coupled.rollout(step, jax.tree.map(lambda a: a[None], carry), jax.random.PRNGKey(0), 2, 1)


def test_no_closure_solver_runs_the_plain_solver():
    solver = ns.make_solver(PARAMS, N)
    state, key = initial_state(solver), jax.random.PRNGKey(9)
    step = coupled.make_coupled_step(solver, coupled.NoClosure())
    _, snaps, _ = coupled.rollout(step, coupled.initial_carry(solver, state), key, 6, 3)
    np.testing.assert_allclose(snaps, full_trajectory(state, key, 6, 3), rtol=1e-6, atol=1e-6)


SHARDED_SCRIPT = r"""
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax, jax.numpy as jnp, numpy as np
from closurejax.parallel import data_mesh
from closurejax.physics import initial_conditions as ic
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled

assert jax.device_count() == 8, jax.devices()
params = ns.FlowParams(noise_modes=4, noise_sigma=1e-2)
solver = ns.make_solver(params, 16, closure="Pi")
omega = jax.vmap(lambda k: ic.gaussian_random_field(k, 16))(
    jax.random.split(jax.random.PRNGKey(0), 8)
)
carry = coupled.initial_carry(solver, solver.initial_state(omega))
step = coupled.make_coupled_step(solver, coupled.Smagorinsky(solver.grid), 2, 1e-3)
key = jax.random.PRNGKey(3)
_, plain, _ = coupled.ensemble_rollout(step, carry, key, 6, 3)
mesh = data_mesh()
final, sharded, report = coupled.ensemble_rollout(step, carry, key, 6, 3, mesh=mesh)
assert len(final.state.omega_hat.sharding.device_set) == 8, final.state.omega_hat.sharding
np.testing.assert_allclose(np.asarray(sharded), np.asarray(plain), rtol=1e-6, atol=1e-6)
assert int(jnp.max(report["first_nonfinite_step"])) == -1
print("SHARDED_OK")
"""


def test_ensemble_sharded_over_eight_fake_devices_equals_the_unsharded_run(tmp_path):
    # fake devices must be configured before jax is imported: run in a fresh interpreter
    import os
    import subprocess
    import sys

    script = tmp_path / "sharded.py"
    script.write_text(SHARDED_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0 and "SHARDED_OK" in proc.stdout, proc.stderr[-4000:]


@pytest.mark.slow  # ≈ 18 s on 2 cores
def test_latent_diffusion_source_samples_the_latent_model():
    """The L-CDM (paper B) drives the fused step through the same source as the P-CDM: on a
    sampling step the applied closure is exactly `model.sample` with the step's sampler key."""
    from closurejax.diffusion import latent_model
    from experiments.configs import cpu_latent

    config = cpu_latent.get_config().to_dict()
    config["latent"].update(
        ae_channels=(4, 8), ae_groups=4, ae_num_heads=1, width=4, modes=2, depth=1, embed_dim=8
    )
    stats = {n: {"mean": 0.1, "std": 2.0} for n in ("omega", "target")}
    model = latent_model.from_config(config, stats)
    params = model.init(jax.random.PRNGKey(0), N)
    sampler = conditional.sampler_from_config(config["sampler"], num_steps=2)
    solver = ns.make_solver(PARAMS, N, closure="H")
    step = coupled.make_coupled_step(solver, coupled.DiffusionClosure(model, params, sampler), 3)
    carry = coupled.initial_carry(solver, initial_state(solver, step=6))
    key = jax.random.PRNGKey(4)
    final, _, report = coupled.rollout(step, carry, key, 3, 3)
    omega = solver.vorticity(carry.state)
    sample_key = jax.random.fold_in(ns.step_key(key, carry.state), 1)
    sample = jax.jit(lambda p, k, w: model.sample(p, k, {"omega": w}, sampler))
    expected = sample(params, sample_key, omega[None])[0]
    sample = solver.grid.to_physical(final.sample_hat)
    np.testing.assert_allclose(sample, expected, rtol=1e-5, atol=1e-5)
    assert int(report["first_nonfinite_step"]) == -1
    assert float(jnp.abs(final.closure_hat - final.sample_hat).max()) > 0  # reuse noise: 7, 8


def test_step_cost_counts_what_each_branch_does():
    """`CoupledStep.cost` against the traced step: the papers' no-closure run (H solver + zero
    field) transforms nothing at all and draws n² normals on reuse steps; a source of ω adds one
    inverse transform (its ω) and one forward (its sample) on sampling steps."""
    solver = ns.make_solver(PARAMS, N, closure="H")
    carry = coupled.initial_carry(solver, initial_state(solver))
    key = jax.random.PRNGKey(0)
    none = coupled.make_coupled_step(solver, coupled.NoClosure(), 5, 5e-5)
    assert none.cost == {
        "sample": ns.StepCost(0, 0, 0),
        "reuse": ns.StepCost(0, 0, N * N),
    }
    # with a traced flag both cond branches are in the jaxpr: their work adds up (the drawn
    # layout has n(n+2) normals for the n² of the count: the two Hermitian columns use 2n more);
    # a Python bool (the rollouts' scheduled blocks) traces its branch only
    traced = jnp.asarray(True)
    work = count_work(lambda c, k: none(c, k, sample=traced), carry, key)
    assert work == {"forward": 0, "inverse": 0, "normals": N * (N + 2)}
    assert count_work(lambda c, k: none(c, k, sample=True), carry, key)["normals"] == 0
    assert count_work(lambda c, k: none(c, k, sample=False), carry, key)["normals"] == N * (N + 2)
    marker = coupled.make_coupled_step(solver, UniformMarker(), 5, 0.0)
    assert marker.cost == {"sample": ns.StepCost(1, 1, 0), "reuse": ns.StepCost(0, 0, 0)}
    work = count_work(lambda c, k: marker(c, k, sample=traced), carry, key)
    assert work == {"forward": 1, "inverse": 1, "normals": 0}
    work = count_work(lambda c, k: marker(c, k, sample=False), carry, key)
    assert work == {"forward": 0, "inverse": 0, "normals": 0}
    # closure Π: the solver's own advection and forcing band come on top, on both branches
    les = ns.make_solver(PARAMS, N, closure="Pi")
    pi = coupled.make_coupled_step(les, coupled.Smagorinsky(les.grid), 5, 0.0)
    base = les.step_cost
    assert pi.cost["reuse"] == base._replace(forward=base.forward - 1)
    assert pi.cost["sample"] == base._replace(inverse=base.inverse + 1)
