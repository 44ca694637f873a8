"""The online test of a study (`closurejax.evaluation.online_study.run_online`): sources from
checkpoints, results.json, figures, and the cached results it reuses."""

from __future__ import annotations

import json

import pytest

from closurejax import atomic
from closurejax.evaluation import online_study
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import sources
from closurejax.training import run
from tests.tiny import tiny_online_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return tiny_online_study(tmp_path_factory)


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
    results = online_study.run_online(config, workdir, show_progress=False)
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
    table = online_study.format_table(results)
    assert "diffusion" in table and "t=0.05" in table
    stamp = (out / "diffusion.npz").stat().st_mtime_ns
    again = online_study.run_online(config, workdir, show_progress=False, figures=False)
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
        return online_study.run_online(
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


def test_the_reference_source_and_the_reference_dns_do_not_share_a_cache_file(study) -> None:
    """The source "reference" (the DNS's exact closure) and the cached reference DNS once both
    lived in `reference.npz`, so each run recomputed both; a second run now reuses everything."""
    config, workdir = study
    config = {**config, "simulation": {**config["simulation"], "sources": ("reference",)}}
    first = online_study.run_online(config, workdir, show_progress=False, figures=False)
    lines: list[str] = []
    second = online_study.run_online(
        config, workdir, show_progress=False, figures=False, log=lines.append
    )
    assert lines == []
    assert second["reference_seconds"] == 0.0  # the reference DNS came from its cache
    assert second["sources"]["reference"]["seconds"] == first["sources"]["reference"]["seconds"]
    assert (workdir / "simulation" / "reference_dns.npz").exists()
