"""The whole-study driver on a tiny study: every stage, the summary, reuse, resume of the stage
times, export of the results and the exported weights."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from closurejax.evaluation import study as study_lib
from closurejax.training import run
from tests.tiny import tiny_online


def tiny_study() -> dict:
    """The online tests' tiny study at 32² → 16² with a zero-shot 32² copy, all four sources."""
    config = tiny_online(fine=32, coarse=16)
    config["data"]["zero_shot_sizes"] = (32,)
    config["name"] = "tiny_study"
    config["physics"]["noise_modes"] = 7  # the band must fit the 16² solver
    config["evaluation"].update(ensemble_size=3, max_snapshots=2)
    config["sampler"]["num_steps"] = 2
    config["simulation"].update(
        sources=("none", "diffusion", "regression", "reference"), animation=False
    )
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    config = tiny_study()
    lines: list[str] = []
    summary = study_lib.run_study(config, workdir, show_progress=False, log=lines.append)
    return config, workdir, summary, lines


@pytest.mark.slow  # the tiny study end to end: ≈ 2.5 min on 2 cores
def test_every_stage_runs_and_the_summary_has_the_papers_table(finished) -> None:
    config, workdir, summary, lines = finished
    assert summary == json.loads((workdir / "study" / "summary.json").read_text())
    assert set(summary["offline"]) == {"16", "32"}  # training grid and zero-shot
    for entry in summary["offline"].values():
        assert set(entry) == {"single", "ensemble_mean", "regression", "crps", "spread_skill"}
        assert all(np.isfinite(v) and v > 0 for v in entry.values())
    online = summary["online"]
    assert online["t"] == [0.03, 0.05]
    for name in ("none", "diffusion", "regression", "reference", "diffusion_fast"):
        assert len(online[name]) == 2 and all(v >= 0 for v in online[name]), name
    for name in ("diffusion_spread_skill", "diffusion_crps", "diffusion_coherent_spread_skill"):
        assert len(online[name]) == 2 and all(v > 0 for v in online[name]), name
    # the coherent run is its own run of the same model: other numbers, its own folder
    assert online["diffusion_coherent"] != online["diffusion"]
    coherent = json.loads((workdir / "simulation_coherent" / "results.json").read_text())
    assert coherent["config"]["simulation"]["sampler_noise"] == "member"
    assert set(coherent["sources"]) == {"diffusion"}
    assert online["fast_sampler"]["name"] == "dpm_solver"
    assert online["fast_sampler"]["num_steps"] == 2
    assert set(summary["wall_seconds"]) == set(study_lib.STAGES)
    assert all(s > 0 for s in summary["wall_seconds"].values())
    # the reference (exact H) beats no closure; the offline numbers are the offline stage's
    assert online["reference"][-1] < online["none"][-1]
    metrics = json.loads((workdir / "offline" / "metrics.json").read_text())
    assert summary["offline"]["16"]["single"] == metrics["score/n16"]["rel_error_sample"]
    assert summary["offline"]["16"]["regression"] == metrics["regression/n16"]["rel_error"]
    assert [line for line in lines if line.startswith("study: ")][0] == "study: data …"


@pytest.mark.slow  # the tiny study end to end: ≈ 2.5 min on 2 cores
def test_a_second_run_reuses_every_stage_and_keeps_the_times(finished) -> None:
    config, workdir, summary, _ = finished
    offline = workdir / "offline" / "metrics.json"
    before = offline.stat().st_mtime_ns
    again = study_lib.run_study(config, workdir, show_progress=False, log=lambda _: None)
    assert offline.stat().st_mtime_ns == before  # the offline table was reused, not recomputed
    assert again["offline"] == summary["offline"] and again["online"] == summary["online"]
    # the wall seconds add the (short) reuse to the time the first run took
    timings = json.loads((workdir / "study" / "timings.json").read_text())
    for stage in study_lib.STAGES:
        first, second = timings[stage][-2:]
        assert first["completed"] and second["completed"]
        total = first["seconds"] + second["seconds"]
        assert again["wall_seconds"][stage] == pytest.approx(total)
    assert again["wall_seconds"]["train_score"] < 2 * summary["wall_seconds"]["train_score"]


def test_two_study_processes_on_one_workdir_keep_each_others_stage_times(tmp_path) -> None:
    """Stage logs opened before either wrote (two processes running different stages of one
    workdir side by side): each add keeps what the other wrote in between."""
    path = tmp_path / "study" / "timings.json"
    score, regression = study_lib.StageTimings(path), study_lib.StageTimings(path)
    regression.add("train_regression", 30.0, True)
    score.add("train_score", 40.0, True)
    regression.add("offline", 5.0, True)
    again = study_lib.StageTimings(path)
    assert [again.wall_seconds(s) for s in ("train_score", "train_regression", "offline")] == [
        40.0,
        30.0,
        5.0,
    ]


def test_interrupted_stage_times_add_up_and_bad_requests_are_refused(tmp_path) -> None:
    t = study_lib.StageTimings(tmp_path / "timings.json")
    t.add("data", 5.0, False)  # killed
    assert t.wall_seconds("data") is None
    t.add("data", 7.0, True)  # resumed to the end
    assert t.wall_seconds("data") == 12.0
    t.add("data", 0.5, True)  # reused
    assert study_lib.StageTimings(tmp_path / "timings.json").wall_seconds("data") == 12.5
    assert study_lib.StageTimings(tmp_path / "timings.json").wall_seconds("online") is None
    config = tiny_study()
    with pytest.raises(ValueError, match=r"unknown study stage\(s\) \['train'\]"):
        study_lib.run_study(config, tmp_path, stages=("train",))
    config["model"]["kind"] = "regression"
    with pytest.raises(ValueError, match="model.kind='regression' is invalid for a study"):
        study_lib.run_study(config, tmp_path)
    assert not (tmp_path / "dataset").exists()  # refused before any compute


@pytest.mark.slow  # the tiny study end to end: ≈ 2.5 min on 2 cores
def test_exported_results_hold_the_summary_figures_and_weights(finished, tmp_path) -> None:
    config, workdir, summary, _ = finished
    folder = tmp_path / "results"
    written = study_lib.export_results(config, workdir, folder)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "summary.json",
            "offline_closure.png",
            "online_error.png",
            "online_spectra.png",
            "score_weights.npz",
            "regression_weights.npz",
        ]
    )
    stored = json.loads((workdir / "study" / "summary.json").read_text())
    assert json.loads((folder / "summary.json").read_text()) == stored
    assert stored["offline"] == summary["offline"]
    for kind in ("score", "regression"):
        kind_config = study_lib._with_kind(config, kind)
        model, params = run.load(kind_config, workdir, use_ema=True)
        loaded, trained_with = study_lib.load_weights(folder / f"{kind}_weights.npz", params)
        assert trained_with == kind_config
        for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(a, np.asarray(b, np.float32))
        wrong = jax.tree.map(lambda a: np.zeros((*np.shape(a), 2)), params)
        with pytest.raises(ValueError, match="another shape"):
            study_lib.load_weights(folder / f"{kind}_weights.npz", wrong)
        # the exported file alone gives the model: same predictions as the trained checkpoint
        exported, exported_params, exported_config = study_lib.load_exported(
            folder / f"{kind}_weights.npz"
        )
        assert exported_config == kind_config
        assert exported.stats == {
            k: {"mean": float(v["mean"]), "std": float(v["std"])} for k, v in model.stats.items()
        }
        n = config["data"]["coarse_size"]
        cond = {
            name: jax.random.normal(jax.random.PRNGKey(i), (2, n, n))
            for i, name in enumerate(model.condition_names)
        }
        if kind == "regression":
            np.testing.assert_allclose(
                exported.predict(exported_params, cond), model.predict(params, cond), rtol=1e-5
            )
        else:
            from closurejax.diffusion import conditional

            sampler = conditional.sampler_from_config(config["sampler"])
            key = jax.random.PRNGKey(3)
            np.testing.assert_allclose(
                exported.sample(exported_params, key, cond, sampler),
                model.sample(params, key, cond, sampler),
                rtol=1e-4,
                atol=1e-6,
            )


def test_launcher_refuses_an_unknown_stage_in_one_line(tmp_path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "experiments/reproduce.py",
            "--config=experiments/configs/paper_a_h_cpu.py",
            f"--workdir={tmp_path / 'w'}",
            "--stages=data,train",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "reproduce: unknown study stage(s) ['train']; allowed: ('data', 'train_score', "
        "'train_regression', 'offline', 'online', 'online_fast', 'online_coherent')"
    )
    assert not (tmp_path / "w" / "dataset").exists()
