"""Latent-model (L-CDM) training through closurejax.training.run: joint and two-stage, exact
resume, exact restore, refused checkpoints, and the paper configs' smoke test."""

from __future__ import annotations

import importlib
import json

import jax
import numpy as np
import optax
import pytest

from closurejax.data import generate, store
from closurejax.diffusion import conditional, latent_model
from closurejax.evaluation import offline
from closurejax.training import checkpoint, run
from tests.tiny import TINY_LATENT, tiny_config


def tiny_latent_study(mode: str = "joint") -> dict:
    """A 16² study (3 trajectories × 5 snapshots; 10 training samples) and an 8×8-latent model."""
    config = tiny_config()
    config["model"].update(kind="latent", conditions=("omega",), width=8, modes=4, depth=2)
    config["model"]["embed_dim"] = 16
    config["latent"].update(TINY_LATENT, training_mode=mode)
    config["diffusion"]["sigma"] = 30.0
    config["sampler"]["t_max"] = 0.4
    config["training"].update(
        batch_size=4, num_epochs=2, checkpoint_every=2, log_every=1, schedule="constant"
    )
    config["evaluation"].update(ensemble_size=3, max_snapshots=4)
    return config


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("latent_study")
    config = tiny_latent_study()
    generate.generate(config, workdir, show_progress=False, log=lambda _: None)
    return config, workdir


def same_tree(a, b) -> None:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow  # ≈ 30 s on 2 cores
def test_joint_training_resumes_exactly_and_restores_bit_identical(study, tmp_path):
    config, workdir = study
    # uninterrupted: 4 steps (2 epochs × ⌊10 samples / 4⌋)
    model, full = run.train(config, workdir, show_progress=False)  # -> workdir/latent
    assert isinstance(model, latent_model.LatentDiffusionModel) and int(full.step) == 4
    assert set(full.params) == {"target_ae", "omega_ae", "score"}
    # killed after step 3 (last checkpoint at step 2), then resumed to the end
    run.train(config, workdir, run_name="joint_cut", num_steps=3, show_progress=False)
    ckpt = checkpoint.CheckpointManager(workdir / "joint_cut" / "checkpoints")
    assert ckpt.all_steps() == [2, 3]
    ckpt.close()
    _, resumed = run.train(config, workdir, run_name="joint_cut", show_progress=False)
    same_tree(resumed.params, full.params)
    same_tree(resumed.ema_params, full.ema_params)
    same_tree(resumed.opt_state, full.opt_state)
    # every network moved from its initial value (one optimiser over all three); the metrics
    # carry the joint loss's terms
    _, initial = run.train(config, workdir, run_name="joint_init", num_steps=0, show_progress=False)
    assert int(initial.step) == 0
    fresh = initial.params
    for name in ("target_ae", "omega_ae", "score"):
        assert any(
            not np.array_equal(a, b)
            for a, b in zip(
                jax.tree.leaves(full.params[name]), jax.tree.leaves(fresh[name]), strict=True
            )
        )
    lines = [json.loads(s) for s in (workdir / "latent" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert {"mse_target", "mse_condition", "dsm", "kl"} <= set(lines[-1])
    # restore: run.load returns the checkpoint's parameters bit for bit
    loaded, params = run.load(config, workdir, use_ema=False)
    assert loaded.kind == "latent" and loaded.condition_names == ("omega",)
    same_tree(params, full.params)
    _, ema = run.load(config, workdir)
    same_tree(ema, full.ema_params)


@pytest.mark.slow  # ≈ 30 s on 2 cores; `make test-slow` (and CI) runs it
def test_offline_evaluation_of_the_latent_model_beside_its_pcdm(study, capsys):
    """The offline test (`offline_study`, behind experiments/evaluate_offline.py) on the joint
    run (trained above) and a P-CDM of the config's model section: reconstruction, sample
    scores, cost, JSON and table."""
    import ml_collections

    from closurejax.evaluation import offline_study

    config, workdir = study
    if not (workdir / "latent").exists():
        run.train(config, workdir, show_progress=False)
    config = ml_collections.ConfigDict(config)
    config.evaluation.ensemble_size = 2
    config.evaluation.max_snapshots = 2
    # without a P-CDM: the reason it is skipped
    assert "no P-CDM run" in offline_study._load_pcdm(config, workdir, use_ema=True)
    pcdm = config.to_dict()
    pcdm["model"]["kind"] = "score"
    run.train(pcdm, workdir, num_steps=1, show_progress=False)  # -> workdir/score
    results = offline_study.evaluate(config, workdir)
    assert results["latent_run"] == "latent" and results["training_mode"] == "joint"
    latent, score = results["latent/n16"], results["score/n16"]
    for r in (latent, score):
        assert r["num_snapshots"] == 2 and r["ensemble_size"] == 2 and r["nfe"] == 10
        assert all(np.isfinite(r[k]) for k in ("rel_error_sample", "rel_error_mean", "crps"))
        assert r["cost"]["batch"] == 2 and r["cost"]["seconds_per_sample"] > 0
    # reconstruction errors = the metrics of model.reconstruct on the same test snapshots
    model, params = run.load(config.to_dict(), workdir)
    fields = offline.test_fields(
        store.open_dataset(workdir / "dataset"), ["omega", "target"], "", 2
    )
    recon = offline.evaluate_reconstruction(model, params, fields)
    assert latent["reconstruction"] == recon
    h = np.asarray(jax.jit(model.reconstruct, static_argnums=1)(params, "target", fields["target"]))
    rel = np.linalg.norm(h - fields["target"], axis=(1, 2)) / np.linalg.norm(
        fields["target"], axis=(1, 2)
    )
    np.testing.assert_allclose(recon["target"]["rel_error"], rel.mean(), rtol=1e-5)
    out = workdir / "offline_latent"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["latent/n16"]["reconstruction"]["omega"]["mse"] == recon["omega"]["mse"]
    for name in ("latent_closure_n16.png", "score_closure_n16.png", "reconstruction.png"):
        assert (out / name).stat().st_size > 0
    table = offline_study.format_results(results)
    assert "latent/n16" in table and "score/n16" in table and "recon H" in table


@pytest.mark.slow  # ≈ 30 s on 2 cores
def test_two_stage_trains_both_stages_on_frozen_stage1_encoders(study):
    config, workdir = tiny_latent_study("two_stage"), study[1]
    logs: list[str] = []
    # stop inside stage 1: stage 2 not started
    _, partial = run.train(config, workdir, num_steps=3, show_progress=False, log=logs.append)
    assert isinstance(partial, run.TwoStageState) and partial.score is None and partial.step == 3
    with pytest.raises(ValueError, match="stage 2"):
        _ = partial.params
    with pytest.raises(ValueError, match="stage 1 .* step 3 of 4"):
        run.load(config, workdir)
    model, state = run.train(config, workdir, show_progress=False, log=logs.append)
    assert int(state.autoencoders.step) == 4 and int(state.score.step) == 4 and state.step == 8
    assert any("stage 2/2" in line for line in logs)
    folder = workdir / "latent_two_stage"
    assert (folder / "autoencoders" / "metrics.jsonl").exists()
    assert (folder / "score" / "metrics.jsonl").exists()
    # stage 2 trained only the score; the autoencoders are stage 1's EMA, unchanged
    ae = run.load(config, workdir)[1]
    stage1 = checkpoint.CheckpointManager(folder / "autoencoders" / "checkpoints")
    meta = stage1.metadata()
    stage1.close()
    assert meta["config"]["stage"] == "autoencoders"
    same_tree({k: ae[k] for k in ("target_ae", "omega_ae")}, state.autoencoders.ema_params)
    same_tree(ae["score"], state.score.ema_params)
    same_tree(state.params["target_ae"], state.autoencoders.ema_params["target_ae"])
    # the stage-2 latents are the stage-1 encoders' latents of the training snapshots
    data = store.open_dataset(workdir / "dataset")
    _, trainer = run.build_trainer(config, workdir, show_progress=False, stage="score")
    with trainer:
        assert trainer.step == 4
    batches = run._LatentBatches(
        lambda: run._encode_training_set(model, state.autoencoders.ema_params, data),
        10,
        config["training"],
    )
    first = batches.batch_at(0)
    from closurejax.data import pipeline

    fields = pipeline.Batches(
        pipeline.trajectory_fields(data, "train", ["target", "omega"]),
        ["target", "omega"],
        4,
        config["training"]["seed"],
        stats={n: {"mean": 0.0, "std": 1.0} for n in ("target", "omega")},
        sample_axes=2,
    ).batch_at(0)
    expected = model.encode_latents(state.autoencoders.ema_params, fields)
    np.testing.assert_allclose(first["z_target"], expected["z_target"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first["z_omega"], expected["z_omega"], rtol=1e-5, atol=1e-6)
    # a re-run is a no-op (both stages complete) and the result is unchanged
    _, again = run.train(config, workdir, show_progress=False)
    same_tree(again.ema_params, state.ema_params)
    # --num_steps inside stage 1 on a finished run: one line per stage, nothing done
    logs.clear()
    _, again = run.train(config, workdir, num_steps=2, show_progress=False, log=logs.append)
    assert again.step == 8 and len(logs) == 2, logs
    assert logs[0].startswith("stage 1/2") and logs[1].startswith("stage 2/2"), logs
    assert logs[0].endswith("autoencoders: checkpoint at step 4 ≥ num_steps 2: nothing to do")
    assert logs[1].endswith(
        "score: checkpoint at step 4 ≥ step 0 (num_steps 2 less stage 1's 4 steps): nothing to do"
    )
    # stage 2's score network was trained with σ = 30: loading it with another σ is refused
    other = {**config, "diffusion": {**config["diffusion"], "sigma": 26.0}}
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r"diffusion\.sigma=30"):
        run.load(other, workdir)
    # stage 1 retrained (longer): stage 2's checkpoint was made on other latents and is refused
    longer = {**config, "latent": {**config["latent"], "stage1_epochs": 3}}
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="another stage-1 result"):
        run.train(longer, workdir, show_progress=False)


def test_latent_checkpoint_of_another_architecture_is_refused(study):
    config, workdir = study
    if not (workdir / "latent").exists():  # the joint run trained above (its compiled step is
        run.train(config, workdir, show_progress=False)  # cached; another length would not be)
    wider = {**config, "latent": {**config["latent"], "ae_channels": (4, 16)}}
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="params/"):
        run.load(wider, workdir)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run.load(config, workdir, run_name="never_trained")


@pytest.mark.parametrize(
    ("section", "field", "value", "match"),
    [
        ("latent", "training_mode", "three_stage", "latent.training_mode='three_stage'.*allowed"),
        ("latent", "modes", 5, "smaller than 2 \\* latent.modes = 10"),
        ("latent", "latent_channels", 2, "latent_channels must be 1"),
        ("latent", "loss_weights", (10.0, 0.1, -1.0, 0.0), "latent.loss_weights"),
        ("latent", "ae_groups", 3, "GroupNorm"),
        ("model", "conditions", ("omega", "sparse_interpolated"), "conditions on \\('omega',\\)"),
        ("latent", "stage1_epochs", 0, "latent.stage1_epochs=0"),
    ],
)
def test_config_errors_are_clear(study, section, field, value, match):
    config, workdir = study
    bad = {**config, section: {**config[section], field: value}}
    if field == "stage1_epochs":
        bad["latent"]["training_mode"] = "two_stage"
    with pytest.raises(ValueError, match=match):
        run.train(bad, workdir, run_name="bad", show_progress=False)


def test_stage_argument_is_checked(study):
    config, workdir = study
    with pytest.raises(ValueError, match="stage='score' applies only"):
        run.build_trainer(config, workdir, stage="score")
    two = tiny_latent_study("two_stage")
    with pytest.raises(ValueError, match="stage=None is invalid.*autoencoders"):
        run.build_trainer(two, workdir)


def unit_stats(names):
    return {n: {"mean": 0.0, "std": 1.0} for n in names}


@pytest.mark.slow  # ≈ 40 s each on 2 CPU cores: compiling two 9 M-parameter autoencoders
@pytest.mark.parametrize("study_name", ["paper_b_lcdm_joint", "paper_b_lcdm_two_stage"])
def test_paper_b_latent_configs_build_train_one_step_and_sample(study_name):
    """Paper-size networks (two ≈ 9 M-parameter autoencoders, latent FNO modes 4 width 20) at
    batch 2: one step of the config's training (joint loss, or both stages' losses) and one
    10-step Euler–Maruyama sample."""
    config = importlib.import_module(f"experiments.configs.{study_name}").get_config().to_dict()
    model = run.model_from_config(config, unit_stats(["omega", "target"]))
    n = config["data"]["coarse_size"]
    assert n == 64 and model.latent_size(n) == 16 and model.sde.sigma == 30.0
    params = jax.jit(model.init, static_argnums=1)(jax.random.PRNGKey(0), n)
    from closurejax.models import fno

    assert 8.9e6 < fno.count_params(params["target_ae"]) < 9.1e6
    key = jax.random.PRNGKey(1)
    batch = {
        name: 0.1 * jax.random.normal(jax.random.fold_in(key, i), (2, n, n))
        for i, name in enumerate(["omega", "target"])
    }
    tx = optax.adam(1e-3)
    if config["latent"]["training_mode"] == "joint":
        parts = {"all": (model.loss, params, batch)}
    else:
        aes = {k: params[k] for k in ("target_ae", "omega_ae")}
        latents = jax.jit(model.encode_latents)(aes, batch)
        parts = {
            "stage1": (model.reconstruction_loss, aes, batch),
            "stage2": (model.latent_loss, params["score"], latents),
        }
    new = {}
    for name, (loss_fn, p, b) in parts.items():

        @jax.jit
        def train_step(p, opt_state, b=b, loss_fn=loss_fn):
            (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, b, key)
            updates, opt_state = tx.update(grads, opt_state)
            return optax.apply_updates(p, updates), loss

        new[name], loss = train_step(p, tx.init(p))
        assert np.isfinite(loss)
        assert any(
            not np.array_equal(a, c)
            for a, c in zip(jax.tree.leaves(p), jax.tree.leaves(new[name]), strict=True)
        )
    sampler = conditional.sampler_from_config(config["sampler"])
    assert sampler.num_steps == 10 and sampler.t_max == 0.4
    sample = jax.jit(lambda p, k: model.sample(p, k, {"omega": batch["omega"]}, sampler))
    out = sample(params, key)
    assert out.shape == (2, n, n) and np.all(np.isfinite(np.asarray(out)))


def test_stage1_steps_sets_the_autoencoder_stage_in_steps(study) -> None:
    workdir = study[1]
    config = tiny_latent_study("two_stage")
    config["latent"]["stage1_steps"] = 3
    _, trainer = run.build_trainer(
        config, workdir, run_name="stage1_steps", show_progress=False, stage="autoencoders"
    )
    with trainer:
        assert trainer.total_steps == 3
    config["latent"]["stage1_steps"] = 0  # the epochs decide
    _, trainer = run.build_trainer(
        config, workdir, run_name="stage1_epochs", show_progress=False, stage="autoencoders"
    )
    with trainer:
        assert trainer.total_steps == config["latent"]["stage1_epochs"] * 2  # ⌊10 samples / 4⌋
    config["latent"]["stage1_steps"] = -1
    with pytest.raises(ValueError, match=r"latent\.stage1_steps=-1 is invalid"):
        run.build_trainer(
            config, workdir, run_name="bad", show_progress=False, stage="autoencoders"
        )
