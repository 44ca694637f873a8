"""Closure-model training end to end: tiny study, paper-config smoke tests, bad input."""

from __future__ import annotations

import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from closurejax import locking
from closurejax.data import generate
from closurejax.diffusion import conditional
from closurejax.evaluation import offline
from closurejax.training import checkpoint, run
from tests.damage import flip_bytes, largest_file, truncate
from tests.processes import holding_lock
from tests.tiny import tiny_config


def tiny_study() -> dict:
    config = tiny_config()
    config["model"].update(width=8, modes=4, depth=2, embed_dim=16)
    config["training"].update(
        batch_size=4, num_epochs=2, checkpoint_every=2, log_every=1, schedule="constant"
    )
    config["evaluation"].update(ensemble_size=3, max_snapshots=4)
    return config


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    config = tiny_study()
    generate.generate(config, workdir, show_progress=False, log=lambda _: None)
    return config, workdir


def test_train_then_load_and_sample_at_two_resolutions(study):
    config, workdir = study
    model, state = run.train(config, workdir, show_progress=False)
    assert int(state.step) == 4  # 2 epochs × ⌊(2 train trajectories × 5 snapshots) / 4⌋ batches
    loaded, params = run.load(config, workdir, use_ema=False)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    sampler = conditional.sampler_from_config(config["sampler"])
    from closurejax.data import store

    for path, suffix in ((workdir / "dataset", ""), (workdir / "zero_shot", "_32")):
        data = store.open_dataset(path)
        fields = offline.test_fields(data, [*loaded.condition_names, "target"], suffix, 2)
        summary, example = offline.evaluate_score_model(
            loaded, params, fields, sampler, 3, jax.random.PRNGKey(0)
        )
        assert np.isfinite(summary["rel_error_mean"]) and summary["num_snapshots"] == 2
        assert example["samples"].shape == (3, *fields["target"].shape[1:])


def test_regression_baseline_trains_and_predicts(study):
    config, workdir = study
    config = {**config, "model": {**config["model"], "kind": "regression"}}
    model, state = run.train(config, workdir, show_progress=False)
    loaded, params = run.load(config, workdir)
    from closurejax.data import store

    fields = offline.test_fields(
        store.open_dataset(workdir / "dataset"), ["omega", "sparse_interpolated", "target"]
    )
    result = offline.evaluate_regression_model(loaded, params, fields)
    assert np.isfinite(result["rel_error"]) and result["num_snapshots"] == 5


def test_checkpoint_of_another_architecture_is_refused(study):
    config, workdir = study
    run.train(config, workdir, show_progress=False)
    wider = {**config, "model": {**config["model"], "width": 12}}
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="params/"):
        run.load(wider, workdir)


def test_checkpoint_of_another_sde_is_refused(study):
    """A score network trained with one SDE is not loaded, nor trained further, with another
    diffusion section; the regression baseline has no SDE and is not refused."""
    config, workdir = study
    run.train(config, workdir, show_progress=False)
    for field, value in (("sde", "vp"), ("sigma", 30.0), ("parameterization", "edm")):
        other = {**config, "diffusion": {**config["diffusion"], field: value}}
        expected = (
            rf"trained with diffusion\.{field}={config['diffusion'][field]!r}, but the config "
            rf"gives diffusion\.{field}={value!r}"
        )
        for attempt in (run.load, lambda c, w: run.train(c, w, show_progress=False)):
            with pytest.raises(checkpoint.IncompatibleCheckpointError, match=expected) as info:
                attempt(other, workdir)
            assert "\n" not in str(info.value)
    assert run.load(config, workdir)[1] is not None  # the stored section itself still loads
    regression = {**config, "model": {**config["model"], "kind": "regression"}}
    run.train(regression, workdir, show_progress=False)
    vp = {**regression, "diffusion": {**config["diffusion"], "sde": "vp"}}
    assert run.load(vp, workdir)[0].kind == "regression"


def test_restart_says_in_one_line_what_it_does(study):
    """--num_steps below the checkpoint's step, a longer or shorter run on resume: one line each
    (the launcher prints it), and the state stays where it is when there is nothing to do."""
    config, workdir = study
    lines: list[str] = []

    def train(epochs: int, num_steps: int | None = None) -> int:
        cfg = {**config, "training": {**config["training"], "num_epochs": epochs}}
        lines.clear()
        _, state = run.train(
            cfg,
            workdir,
            num_steps=num_steps,
            run_name="plan",
            show_progress=False,
            log=lines.append,
        )
        assert len(lines) == 1 and "\n" not in lines[0], lines
        return int(state.step)

    assert train(2, 2) == 2  # 2 epochs × 2 batches = 4 steps
    assert lines[0].endswith("plan from step 0 to step 2 of 4")
    assert train(2, 1) == 2
    assert lines[0].endswith("plan: checkpoint at step 2 ≥ num_steps 1: nothing to do")
    assert train(4) == 8
    assert lines[0].endswith(
        "plan from step 2, continuing to the new end, step 8 of 8 (the checkpoint's run was set "
        "to 4 steps, the config now gives 8)"
    )
    assert lines[0].startswith("resuming ")
    assert train(2) == 8
    assert lines[0].endswith(
        "plan: checkpoint at step 8 ≥ the run's end 4: nothing to do (the checkpoint's run was "
        "set to 8 steps, the config now gives 4)"
    )
    assert train(4) == 8
    assert lines[0].endswith("plan: checkpoint at step 8 ≥ the run's end 8: nothing to do")


def test_a_refused_training_leaves_no_folder_behind(study):
    """A refusal after the run folder and its checkpoints/ were made removes both (the lock
    removes the empty folders made under it); a bad model.kind names every kind."""
    config, workdir = study
    with pytest.raises(ValueError, match=r"num_steps must be None or an integer in \[0, 4\]"):
        run.train(config, workdir, num_steps=99, run_name="refused", show_progress=False)
    assert not (workdir / "refused").exists()
    bad = {**config, "model": {**config["model"], "kind": "foo"}}
    allowed = r"model.kind='foo' is invalid; allowed: \('score', 'regression', 'latent'\)"
    with pytest.raises(ValueError, match=allowed):
        run.train(bad, workdir, show_progress=False)
    assert not (workdir / "foo").exists()


def test_loading_a_run_never_trained_is_refused_and_makes_no_folder(study):
    config, workdir = study
    with pytest.raises(FileNotFoundError) as info:
        run.load(config, workdir, run_name="untrained")
    assert str(info.value) == (
        f"no checkpoint of a trained 'untrained' model in {workdir / 'untrained'}; run "
        "experiments/train.py first"
    )
    assert not (workdir / "untrained").exists()


def test_dataset_of_another_config_is_refused_for_training(study, tmp_path):
    config, workdir = study
    other = {**config, "physics": {**config["physics"], "viscosity": 5e-3}}
    with pytest.raises(ValueError, match="viscosity"):
        run.train(other, workdir, show_progress=False)


def unit_stats(names):
    return {n: {"mean": 0.0, "std": 1.0} for n in names}


@pytest.mark.parametrize(
    "study_name",
    [
        "paper_a_h",
        "paper_a_g",
        "paper_a_g_conv",
        pytest.param("paper_b", marks=pytest.mark.slow),  # the larger P-CDM: ≈ 12 s
        pytest.param("les", marks=pytest.mark.slow),  # ≈ 10 s
    ],
)
def test_paper_configs_build_train_one_step_and_sample(study_name):
    config = importlib.import_module(f"experiments.configs.{study_name}").get_config().to_dict()
    model = conditional.from_config(config, unit_stats([*config["model"]["conditions"], "target"]))
    n = config["data"]["coarse_size"]
    params = model.init(jax.random.PRNGKey(0), n)
    key = jax.random.PRNGKey(1)
    batch = {
        name: 0.1 * jax.random.normal(jax.random.fold_in(key, i), (2, n, n))
        for i, name in enumerate([*model.condition_names, "target"])
    }
    tx = optax.adam(1e-3)

    @jax.jit
    def train_step(params, opt_state):
        (loss, _), grads = jax.value_and_grad(model.loss, has_aux=True)(params, batch, key)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), loss

    new_params, loss = train_step(params, tx.init(params))
    assert np.isfinite(loss)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(new_params), strict=True)
    )
    sampler = conditional.sampler_from_config(config["sampler"])
    cond = {name: batch[name] for name in model.condition_names}
    sample = jax.jit(lambda p, k: model.sample(p, k, cond, sampler))(new_params, key)
    assert sample.shape == (2, n, n) and np.all(np.isfinite(np.asarray(sample)))


def small_model(**model_overrides):
    config = tiny_study()
    config["model"].update(model_overrides)
    model = conditional.from_config(config, unit_stats(["omega", "sparse_interpolated", "target"]))
    return model, model.init(jax.random.PRNGKey(0), 16)


def test_conditions_whose_shapes_disagree_are_refused():
    model, params = small_model()
    cond = {"omega": jnp.zeros((2, 16, 16)), "sparse_interpolated": jnp.zeros((2, 32, 32))}
    with pytest.raises(ValueError, match="sparse_interpolated.*shape"):
        model.sample(
            params,
            jax.random.PRNGKey(0),
            cond,
            conditional.sampler_from_config(tiny_study()["sampler"]),
        )
    with pytest.raises(ValueError, match="missing condition"):
        model.encode(params, {"omega": jnp.zeros((2, 16, 16))})


def test_grid_smaller_than_twice_the_modes_is_refused():
    model, params = small_model()
    cond = {"omega": jnp.zeros((2, 6, 6)), "sparse_interpolated": jnp.zeros((2, 6, 6))}
    with pytest.raises(ValueError, match="modes"):
        model.encode(params, cond)


def test_batch_with_nan_is_refused():
    model, params = small_model()
    cond = {
        "omega": jnp.zeros((2, 16, 16)).at[0, 1, 1].set(jnp.nan),
        "sparse_interpolated": jnp.zeros((2, 16, 16)),
    }
    with pytest.raises(ValueError, match="non-finite"):
        model.encode(params, cond)


def test_previous_closure_sample_as_a_condition(study):
    from closurejax.data import pipeline, store

    config, workdir = study
    data = store.open_dataset(workdir / "dataset")
    fields = pipeline.trajectory_fields(
        data, "train", ["omega", pipeline.PREVIOUS_TARGET, "target"]
    )
    # aligned: the condition at snapshot j is the target at snapshot j − 1 of the same trajectory
    np.testing.assert_array_equal(fields[pipeline.PREVIOUS_TARGET][:, 1:], fields["target"][:, :-1])
    np.testing.assert_array_equal(fields["omega"], data.train["omega"][:, 1:])
    assert fields["target"].shape[1] == data.train["target"].shape[1] - 1
    config = {**config, "model": {**config["model"], "conditions": ("omega", "previous_target")}}
    model, state = run.train(config, workdir, run_name="previous", show_progress=False)
    assert model.condition_names == ("omega", "previous_target") and int(state.step) > 0
    test = offline.test_fields(data, ["omega", "previous_target", "target"])
    assert len(test["target"]) == 4  # one test trajectory, 5 snapshots, first has no predecessor


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        # flipped bytes: in the slow set (≈ 25 s on 2 cores); truncation runs in make test.
        # Whether the flip lands in raw array bytes (checksum) or in compressed framing (read
        # error) depends on the file's layout; test_checkpoint checks the checksum message.
        pytest.param(
            flip_bytes,
            "its arrays (differ from the checksum|cannot be read)",
            marks=pytest.mark.slow,
        ),
        (truncate, "its arrays cannot be read"),
    ],
)
def test_corrupt_checkpoint_is_refused_by_load_and_skipped_by_train(study, damage, reason):
    """A damaged latest checkpoint: `load` (evaluation) refuses it in one line naming it;
    `train` resumes from the newest intact one with a warning and ends where an uninterrupted
    run ends."""
    config, workdir = study
    run_name = f"corrupt_{damage.__name__}"
    _, reference = run.train(config, workdir, run_name="intact", show_progress=False)
    run.train(config, workdir, run_name=run_name, show_progress=False)
    checkpoints = workdir / run_name / "checkpoints"
    assert sorted(int(p.name) for p in checkpoints.iterdir()) == [2, 4]
    damage(largest_file(checkpoints / "4" / "state"))
    with pytest.raises(checkpoint.CorruptCheckpointError) as info:
        run.load(config, workdir, run_name=run_name)
    expected = rf"checkpoint {re.escape(str(checkpoints / '4'))} is corrupt: {reason}"
    assert re.match(expected, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)
    lines: list[str] = []
    with pytest.warns(checkpoint.CheckpointWarning, match="resuming from step 2, the newest"):
        _, state = run.train(
            config, workdir, run_name=run_name, show_progress=False, log=lines.append
        )
    assert lines == [f"resuming {workdir / run_name} from step 2, continuing to step 4 of 4"]
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (workdir / run_name / "checkpoints_corrupt" / "4").is_dir()
    run.load(config, workdir, run_name=run_name)  # the retrained step 4 is intact


def test_second_training_of_a_run_is_refused_naming_the_holder(study):
    """Another process training the run (it holds the run folder's lock): refused in one line
    naming it, before anything in the run changes (no metrics lines twice)."""
    config, workdir = study
    run.train(config, workdir, num_steps=2, run_name="locked", show_progress=False)
    folder = workdir / "locked"
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with holding_lock(folder, "train") as holder:
        with pytest.raises(locking.FolderLockedError) as info:
            run.train(config, workdir, run_name="locked", show_progress=False)
        assert str(info.value).startswith(
            f"{folder} is in use by another train process (pid {holder.pid} on host"
        )
        assert "\n" not in str(info.value)
        after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert after.pop(folder / ".train.lock") and after == before
    _, state = run.train(config, workdir, run_name="locked", show_progress=False)
    assert int(state.step) == 4 and not (folder / ".train.lock").exists()


def test_training_num_steps_sets_the_run_length_in_steps_instead_of_epochs() -> None:
    training = tiny_config()["training"]
    by_epochs = run.optim_from_config(training)
    assert by_epochs.num_steps is None and by_epochs.total_steps(7) == training["num_epochs"] * 7
    training["num_steps"] = 13
    by_steps = run.optim_from_config(training)
    assert by_steps.num_epochs is None and by_steps.total_steps(7) == 13
    # a section saved before the field existed: epochs
    del training["num_steps"]
    assert run.optim_from_config(training).total_steps(7) == training["num_epochs"] * 7
    for bad in (-1, 2.5, True):
        training["num_steps"] = bad
        with pytest.raises(ValueError, match=r"training\.num_steps=.* is invalid"):
            run.optim_from_config(training)
