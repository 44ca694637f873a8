"""The online test: reference DNS with the dataset's seeds, coupled ensembles, resume, sources."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from closurejax import atomic
from closurejax.data import generate, store
from closurejax.evaluation import a_posteriori
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled, online, sources
from closurejax.training import run
from tests.tiny import tiny_online


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("online")
    config = tiny_online()
    generate.generate(config, workdir, show_progress=False, log=lambda _: None)
    return config, workdir


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


def test_sources_from_checkpoints_and_the_online_study(study) -> None:
    """Train a tiny score model, refuse it for the wrong solver, and run the whole online test
    (reference, three sources, JSON, figures, animation); a second call reuses the results."""
    config, workdir = study
    run.train(config, workdir, show_progress=False)
    params = ns.FlowParams.from_config(config["physics"])
    wrong = ns.make_solver(params, 32, "semi_implicit", "G")
    with pytest.raises(sources.IncompatibleModelError, match="trained for closure 'H'"):
        sources.source_from_config("diffusion", config, workdir, wrong)
    with pytest.raises(FileNotFoundError, match="no trained 'regression' model"):
        sources.source_from_config("regression", config, workdir, wrong)
    right = ns.make_solver(params, 32, "semi_implicit", "H")
    vp = {**config, "diffusion": {**config["diffusion"], "sde": "vp"}}
    with pytest.raises(ValueError, match=r"diffusion\.sde='ve', but the config gives .*'vp'"):
        sources.source_from_config("diffusion", vp, workdir, right)
    config = {
        **config,
        "simulation": {**config["simulation"], "sources": ("none", "reference", "diffusion")},
    }
    results = a_posteriori.run_online(config, workdir, show_progress=False)
    out = workdir / "simulation"
    on_disk = json.loads((out / "results.json").read_text())
    assert set(on_disk["sources"]) == {"none", "reference", "diffusion"}
    for name, entry in results["sources"].items():
        m = entry["metrics"]
        assert len(m["ensemble_mean_relative_error"]) == 5 and len(m["member_relative_error"]) == 2
        assert m["ensemble_mean_relative_error"][0] == pytest.approx(0.0, abs=1e-6), name
        assert entry["blown_up_members"] == 0
    # the exact closure tracks the reference far better than no closure
    err = {
        n: results["sources"][n]["metrics"]["ensemble_mean_relative_error"][-1]
        for n in results["sources"]
    }
    assert err["reference"] < 0.1 * err["none"], err
    for figure in (
        "fields.png",
        "error.png",
        "enstrophy.png",
        "spread_skill.png",
        "spectra.png",
        "rollout.gif",
    ):
        assert (out / "figures" / figure).stat().st_size > 1000, figure
    table = a_posteriori.format_table(results)
    assert "diffusion" in table and "t=0.05" in table
    stamp = (out / "diffusion.npz").stat().st_mtime_ns
    again = a_posteriori.run_online(config, workdir, show_progress=False, figures=False)
    assert (out / "diffusion.npz").stat().st_mtime_ns == stamp  # finished sources are reused
    assert again["sources"]["diffusion"]["metrics"] == results["sources"]["diffusion"]["metrics"]
    assert not list(out.glob("*.partial.npz"))


def test_cached_online_results_are_keyed_by_model_sampler_and_weights(study, tmp_path) -> None:
    """A finished source is reused only for the same model, diffusion and sampler sections and
    the same weights (by content, not step): another sampler, or a retrained model with the
    same step count, recomputes it, says so in one line and labels it with what made it; a
    stale partial run is discarded. The parameter-free sources stay cached throughout."""
    config, data_workdir = study
    workdir = tmp_path / "study"
    workdir.mkdir()
    (workdir / "dataset").symlink_to(data_workdir / "dataset")
    config = {
        **config,
        "simulation": {**config["simulation"], "sources": ("none", "diffusion")},
    }
    run.train(config, workdir, show_progress=False)
    out = workdir / "simulation"
    logs: list[str] = []

    def online(cfg: dict) -> dict:
        logs.clear()
        return a_posteriori.run_online(
            cfg, workdir, show_progress=False, figures=False, log=logs.append
        )

    def stamps() -> dict[str, int]:
        return {n: (out / f"{n}.npz").stat().st_mtime_ns for n in ("none", "diffusion")}

    def error(results: dict) -> list[float]:
        return results["sources"]["diffusion"]["metrics"]["ensemble_mean_relative_error"]

    first = online(config)
    assert logs == []
    before = stamps()
    made_with = first["sources"]["diffusion"]["made_with"]
    _, params = run.load(config, workdir)
    assert made_with["checkpoint"]["params_sha256"] == run.params_digest(params)
    assert made_with["sampler"]["num_steps"] == 10
    # same config, same weights: reused
    again = online(config)
    assert logs == [] and stamps() == before and error(again) == error(first)

    # another sampler: recomputed (one line naming the field), labelled with the new sampler
    fewer = {**config, "sampler": {**config["sampler"], "num_steps": 3}}
    three = online(fewer)
    assert logs == [
        "online: diffusion.npz is stale (sampler.num_steps: 10 → 3): recomputing diffusion"
    ]
    now = stamps()
    assert now["none"] == before["none"] and now["diffusion"] != before["diffusion"]
    assert error(three) != error(first)
    assert three["sources"]["diffusion"]["made_with"]["sampler"]["num_steps"] == 3
    saved = json.loads((out / "results.json").read_text())["sources"]["diffusion"]
    assert (
        saved["made_with"]["sampler"]["num_steps"] == 3
        and saved["metrics"] == three["sources"]["diffusion"]["metrics"]
    )

    # the sampler's noise drawn once per member: the diffusion run only is recomputed
    member = {**fewer, "simulation": {**fewer["simulation"], "sampler_noise": "member"}}
    coherent = online(member)
    assert len(logs) == 1 and "simulation.sampler_noise" in logs[0], logs
    assert logs[0].endswith("recomputing diffusion") and stamps()["none"] == now["none"]
    assert error(coherent) != error(three)
    back = online(fewer)  # back to "fresh": the same numbers as before the option existed
    assert error(back) == error(three) and stamps()["none"] == now["none"]

    # retrained with another learning rate: the same step count, other weights: recomputed
    import shutil

    shutil.rmtree(workdir / "score")
    other_lr = {**fewer, "training": {**fewer["training"], "learning_rate": 3e-3}}
    _, state = run.train(other_lr, workdir, show_progress=False)
    retrained = online(other_lr)
    assert len(logs) == 1 and logs[0].startswith(
        "online: diffusion.npz is stale (checkpoint.params_sha256: "
    ), logs
    assert logs[0].endswith("recomputing diffusion")
    assert stamps()["none"] == before["none"]
    assert error(retrained) != error(three)
    digest = run.params_digest(state.ema_params)
    assert retrained["sources"]["diffusion"]["made_with"]["checkpoint"]["params_sha256"] == digest

    # a partial run of another key is discarded, not resumed
    atomic.save_tagged_npz(
        out / "diffusion.partial.npz", {"fingerprint": "0" * 16, "done": 20, "key": {}}
    )
    (out / "diffusion.npz").unlink()
    fresh = online(other_lr)
    assert len(logs) == 1 and logs[0].startswith("online: diffusion.partial.npz is stale ("), logs
    assert logs[0].endswith(": starting diffusion over")
    assert error(fresh) == error(retrained)
    assert not (out / "diffusion.partial.npz").exists()


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


def test_the_reference_source_and_the_reference_dns_do_not_share_a_cache_file(study) -> None:
    """The source "reference" (the DNS's exact closure) and the cached reference DNS once both
    lived in `reference.npz`, so each run recomputed both; a second run now reuses everything."""
    config, workdir = study
    config = {**config, "simulation": {**config["simulation"], "sources": ("reference",)}}
    first = a_posteriori.run_online(config, workdir, show_progress=False, figures=False)
    lines: list[str] = []
    second = a_posteriori.run_online(
        config, workdir, show_progress=False, figures=False, log=lines.append
    )
    assert lines == []
    assert second["reference_seconds"] == 0.0  # the reference DNS came from its cache
    assert second["sources"]["reference"]["seconds"] == first["sources"]["reference"]["seconds"]
    assert (workdir / "simulation" / "reference_dns.npz").exists()
