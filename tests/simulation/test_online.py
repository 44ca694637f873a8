"""The online test: reference DNS with the dataset's seeds, coupled ensembles, resume, sources."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from closurejax.data import generate, store
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled, online, sources
from tests.tiny import tiny_online, tiny_online_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return tiny_online_study(tmp_path_factory)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match=r"simulation.t_end=0.01 is invalid"):
        online.OnlineSpec(t_start=0.01, t_end=0.01)
    with pytest.raises(ValueError, match=r"simulation.sources=.*'magic'"):
        online.OnlineSpec(sources=("none", "magic"))
    with pytest.raises(ValueError, match=r"figure_times.*\[t_start, t_end\]"):
        online.OnlineSpec(t_start=30.0, t_end=50.0, figure_times=(60.0,))
    with pytest.raises(ValueError, match=r"simulation.sampler_noise='step' is invalid.*'member'"):
        online.OnlineSpec(sampler_noise="step")
    spec = online.OnlineSpec(t_start=0.0, t_end=1.0, every=5, save_interval=0.012, figure_times=())
    with pytest.raises(ValueError, match=r"save_interval=0.012 is invalid.*every·dt"):
        spec.schedule(1e-3, 1)
    spec = online.OnlineSpec(t_start=0.0, t_end=1.0, every=5, save_interval=0.1, figure_times=())
    with pytest.raises(ValueError, match=r"trajectory=0 is invalid.*\[0, 0\)"):
        spec.schedule(1e-3, 0)
    assert spec.schedule(1e-3, 1) == (0, 1000, 100)
    np.testing.assert_allclose(spec.snapshot_times(1e-3, 1), np.arange(11) * 0.1)


def test_one_list_of_closure_sources_serves_the_spec_and_the_builder() -> None:
    assert sources.SOURCES == (*sources.PARAMETER_FREE, *sources.MODEL_KINDS)
    assert online.SOURCES is sources.SOURCES
    for name in sources.SOURCES:  # every listed source passes the config check
        online.OnlineSpec(sources=(name,))
    solver = ns.make_solver(ns.FlowParams(noise_modes=7), 16, closure="H")
    with pytest.raises(ValueError, match=r"unknown closure source 'magic'; allowed: \('none'"):
        sources.source_from_config("magic", tiny_online(), "/nonexistent", solver)


def test_reference_reproduces_the_dataset_trajectory(study) -> None:
    """Same seeds: the regenerated reference equals the dataset's test trajectory."""
    config, workdir = study
    data = store.open_dataset(workdir / "dataset")
    spec = online.OnlineSpec.from_config(config)
    ref = online.reference_run(generate.Study.from_config(config), spec, ("omega", "target"))
    # reference entries every 2 steps from t = 0.01; the dataset has snapshots every 10 steps
    for name in ("omega", "target"):
        np.testing.assert_allclose(
            ref.fields[name][::5],
            data.test[name][0],
            rtol=0,
            atol=1e-6 * np.abs(ref.fields[name]).max(),
        )
    assert ref.start_step == 10 and ref.fields["omega"].shape == (21, 32, 32)


def test_reference_closure_reproduces_the_dns(study) -> None:
    """With coarse = fine grid, H from the reference at every step drives the coupled solver along
    the DNS (keys, step counters and the closure's alignment with the steps are right)."""
    config, _ = study
    config = {**config, "simulation": {**config["simulation"], "every": 1}}
    spec = online.OnlineSpec.from_config(config)
    st = generate.Study.from_config(config)
    start, num_steps, save_every = spec.schedule(st.params.dt, 1)
    ref = online.reference_run(st, spec, ("omega", "target"))
    solver = ns.make_solver(st.params, 32, "semi_implicit", "H")
    step = coupled.make_coupled_step(solver, coupled.ReferenceClosure("target"), 1, 0.0)
    result = online.coupled_run(step, ref, spec, num_steps, save_every, ("target",))
    truth = ref.snapshots(save_every)
    assert result.snapshots.shape == (2, len(truth), 32, 32)
    err = np.abs(result.snapshots - truth[None]).max() / np.abs(truth).max()
    assert err < 1e-4, err
    # and dropping the closure does not: the test can fail
    step0 = coupled.make_coupled_step(solver, coupled.NoClosure(), 1, 0.0)
    none = online.coupled_run(step0, ref, spec, num_steps, save_every)
    assert np.abs(none.snapshots - truth[None]).max() / np.abs(truth).max() > 100 * err


def test_killed_run_resumes_to_the_same_result(study, tmp_path) -> None:
    config, _ = study
    spec = online.OnlineSpec.from_config(config)
    st = generate.Study.from_config(config)
    start, num_steps, save_every = spec.schedule(st.params.dt, 1)
    ref = online.reference_run(st, spec, ("omega", "target"))
    solver = ns.make_solver(st.params, 32, "semi_implicit", "H")
    step = coupled.make_coupled_step(solver, coupled.ReferenceClosure("target"), 2, 5e-5)
    args = (step, ref, spec, num_steps, save_every, ("target",))
    whole = online.coupled_run(*args, snapshots_per_call=1)
    partial = tmp_path / "run.partial.npz"

    class Killed(Exception):
        pass

    calls = []

    def kill_after_two(count: int) -> None:
        calls.append(count)
        if len(calls) == 2:
            raise Killed

    with pytest.raises(Killed):
        online.coupled_run(
            *args,
            partial_path=partial,
            fingerprint="a",
            progress=kill_after_two,
            snapshots_per_call=1,
        )
    assert partial.exists()
    resumed_from = []
    again = online.coupled_run(
        *args,
        partial_path=partial,
        fingerprint="a",
        progress=resumed_from.append,
        snapshots_per_call=1,
    )
    assert resumed_from[0] == 2 * save_every  # the first call reports the steps already done
    np.testing.assert_array_equal(again.snapshots, whole.snapshots)
    # another fingerprint does not resume from it
    other = []
    online.coupled_run(
        *args, partial_path=partial, fingerprint="b", progress=other.append, snapshots_per_call=1
    )
    assert other[0] == save_every


def test_check_checkpoint_refuses_mismatches() -> None:
    config = tiny_online(64, 32)
    params = ns.FlowParams.from_config(config["physics"])
    solver = ns.make_solver(params, 32, "semi_implicit", "H")
    ok = {**config, "model": {**config["model"], "kind": "score"}}
    sources.check_checkpoint(ok, "score", solver)
    with pytest.raises(sources.IncompatibleModelError, match="kind 'score', not 'regression'"):
        sources.check_checkpoint(ok, "regression", solver)
    with pytest.raises(sources.IncompatibleModelError, match="closure 'G'.*supplies 'H'"):
        sources.check_checkpoint({**ok, "data": {**ok["data"], "closure": "G"}}, "score", solver)
    with pytest.raises(sources.IncompatibleModelError, match=r"physics.viscosity=0.01"):
        bad = {**ok, "physics": {**ok["physics"], "viscosity": 0.01}}
        sources.check_checkpoint(bad, "score", solver)
    latent = {
        **ok,
        "model": {**ok["model"], "kind": "latent"},
        "data": {**ok["data"], "coarse_size": 64},
    }
    with pytest.raises(sources.IncompatibleModelError, match="64² grid.*32² grid"):
        sources.check_checkpoint(latent, "latent", solver)
    small = ns.make_solver(dataclasses.replace(params, noise_modes=3), 8, "semi_implicit", "H")
    with pytest.raises(
        sources.IncompatibleModelError, match="at least 10², but the solver.s grid is 8²"
    ):
        sources.check_checkpoint({**ok, "model": {**ok["model"], "modes": 5}}, "score", small)


@pytest.mark.parametrize(
    "name",
    # in the slow set (≈ 20 s each on 2 cores); the tiny online study runs in make test
    [pytest.param(n, marks=pytest.mark.slow) for n in ("paper_a_h", "paper_b")],
)
def test_paper_scale_online_config_runs_a_few_steps(name: str) -> None:
    """The paper-scale online setting (64², 100 members, 10-step EM every 5 steps, 20 000 steps
    from t = 30 s) builds from the config, and one sampling block runs on CPU (untrained
    weights: the point is that the config and the fused step cannot rot)."""
    import importlib

    import jax.numpy as jnp  # noqa: F401

    from closurejax.diffusion import conditional
    from closurejax.physics.initial_conditions import gaussian_random_field

    config = importlib.import_module(f"experiments.configs.{name}").get_config().to_dict()
    spec = online.OnlineSpec.from_config(config)
    st = generate.Study.from_config(config)
    start, num_steps, save_every = spec.schedule(st.params.dt, st.spec.num_test)
    assert (start, num_steps, save_every) == (30_000, 20_000, 100)
    assert spec.ensemble_size == 100 and spec.every == 5
    solver = ns.make_solver(st.params, st.spec.coarse_size, st.spec.stepper, st.spec.closure)
    names = [*config["model"]["conditions"], "target"]
    model = conditional.from_config(config, {n: {"mean": 0.0, "std": 1.0} for n in names})
    params = model.init(jax.random.PRNGKey(0), st.spec.coarse_size)
    sampler = conditional.sampler_from_config(config["sampler"])
    assert sampler.nfe == 10
    step = coupled.make_coupled_step(
        solver, coupled.DiffusionClosure(model, params, sampler), spec.every, spec.reuse_noise
    )
    omega = 0.1 * gaussian_random_field(jax.random.PRNGKey(1), st.spec.coarse_size, 2.5, 7.0)
    carry = coupled.initial_carry(solver, solver.initial_state(omega, step=start))
    carry = jax.tree.map(lambda a: jnp.broadcast_to(a, (spec.ensemble_size, *a.shape)), carry)
    context = {
        n: jnp.zeros((spec.every, st.spec.coarse_size, st.spec.coarse_size))
        for n in config["model"]["conditions"]
        if n != "omega"
    }
    final, snaps, report = coupled.ensemble_rollout(
        step, carry, jax.random.PRNGKey(2), spec.every, spec.every, context or None
    )
    assert snaps.shape == (100, 2, 64, 64)
    assert bool(jnp.all(report["first_nonfinite_step"] == -1))
    assert int(final.state.step[0]) == start + spec.every


def test_checkpoint_folders_of_each_source(tmp_path) -> None:
    config = tiny_online()
    root = tmp_path.resolve()
    assert sources.checkpoint_dir(config, tmp_path, "score") == root / "score" / "checkpoints"
    assert sources.checkpoint_dir(config, tmp_path, "latent") == root / "latent" / "checkpoints"
    two = {**config, "latent": {**config["latent"], "training_mode": "two_stage"}}
    expected = root / "latent_two_stage" / "score" / "checkpoints"
    assert sources.checkpoint_dir(two, tmp_path, "latent") == expected
    with pytest.raises(FileNotFoundError, match="no trained 'latent' model"):
        sources.source_from_config(
            "latent",
            two,
            tmp_path,
            ns.make_solver(ns.FlowParams.from_config(config["physics"]), 32, "semi_implicit", "H"),
        )
