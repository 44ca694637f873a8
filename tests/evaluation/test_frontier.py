"""The cost–accuracy frontier: its config checks, the Pareto flags, the FLOP count of a sample,
and a tiny frontier end to end (plan, train, evaluate, reuse, export)."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.config import frontier_section
from closurejax.diffusion import conditional, latent_model
from closurejax.evaluation import frontier, offline
from closurejax.models import flops
from closurejax.training import budget
from tests import tiny

TINY_LATENT = {**tiny.TINY_LATENT, "kl_reduction": "sum"}


def tiny_frontier() -> dict:
    """The online tests' 32² → 16² study (10 training snapshots) with a tiny P-CDM and two tiny
    L-CDMs."""
    config = tiny.tiny_online(fine=32, coarse=16)
    config["model"].update(conditions=("omega",))
    config["diffusion"]["sigma"] = 30.0
    config["sampler"].update(t_max=0.4, num_steps=2)  # online: EM 2, one of the samplers
    config["training"].update(checkpoint_every=1000, log_every=10, warmup_steps=0)
    config["evaluation"].update(ensemble_size=3, max_snapshots=4, zero_shot=False)
    config["physics"]["noise_modes"] = 7  # the band must fit the 16² solver of the online stage
    config["simulation"]["animation"] = False
    section = frontier_section().to_dict()
    section.update(
        train_seconds=1.0,
        plan_steps=2,
        samplers=(("euler_maruyama", 2), ("dpm_solver", 2)),
        timing_batches=(1, 3),
        timing_repeats=1,
        online_members=2,
        models={
            "pcdm": {"model": {"kind": "score"}},
            "lcdm": {"model": {"kind": "latent"}, "latent": TINY_LATENT},
            "lcdm_two_stage": {
                "model": {"kind": "latent"},
                "latent": {**TINY_LATENT, "training_mode": "two_stage"},
            },
        },
    )
    config["frontier"] = section
    config["name"] = "tiny_frontier"
    return config


# --- config ----------------------------------------------------------------------------------


def test_model_config_applies_the_overrides_and_drops_the_frontier_section() -> None:
    config = tiny_frontier()
    model = frontier.model_config(config, "lcdm_two_stage")
    assert "frontier" not in model
    assert model["model"]["kind"] == "latent"
    assert model["latent"]["training_mode"] == "two_stage"
    assert model["latent"]["ae_channels"] == [4, 8]
    assert model["name"] == "tiny_frontier_lcdm_two_stage"
    # the input is not changed
    assert config["latent"]["training_mode"] == "joint"
    assert frontier.model_config(config, "pcdm")["model"]["width"] == 8


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f["models"].update(x={"modle": {"kind": "score"}}), "unknown section 'modle'"),
        (lambda f: f["models"].update(x={"model": {"widht": 4}}), "unknown field model.widht"),
        (lambda f: f["models"].update(x={"model": {"kind": "regression"}}), "model.kind="),
        (lambda f: f["models"].update({"Bad-Name": {}}), "frontier.models='Bad-Name'"),
        (lambda f: f.update(models={}), "frontier.models={}"),
        (lambda f: f.update(train_seconds=0), "frontier.train_seconds=0"),
        (lambda f: f.update(plan_steps=1.5), "frontier.plan_steps=1.5"),
        (lambda f: f.update(timing_batches=()), "frontier.timing_batches=[]"),
        (lambda f: f.update(samplers=(("euler", 2),)), "frontier.samplers=['euler', 2]"),
        (lambda f: f.update(samplers=(("dpm_solver", 0),)), "frontier.samplers=['dpm_solver', 0]"),
        (lambda f: f.update(budget=1), "unknown field(s) ['budget']"),
        (lambda f: f.update(reference="pcdm_big"), "frontier.reference='pcdm_big'"),
        (lambda f: f.update(tolerance=-0.1), "frontier.tolerance=-0.1"),
        (lambda f: f.update(online_members=0), "frontier.online_members=0"),
    ],
)
def test_a_bad_frontier_section_is_refused_in_one_line(change, message) -> None:
    config = tiny_frontier()
    change(config["frontier"])
    with pytest.raises(ValueError, match=None) as error:
        frontier.check_frontier(config)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_config_without_a_frontier_section_is_refused() -> None:
    with pytest.raises(ValueError, match="no 'frontier' section"):
        frontier.check_frontier(tiny.tiny_config())


def test_the_cpu_frontier_config_shares_the_study_data_and_names_the_issue_models() -> None:
    from experiments.configs import frontier_h_cpu, paper_a_h_cpu

    config = frontier_h_cpu.get_config()
    section = frontier.check_frontier(config)
    study = paper_a_h_cpu.get_config()
    assert config.data.to_dict() == study.data.to_dict()  # one dataset for both
    kinds = {n: frontier.model_config(config, n)["model"]["kind"] for n in section["models"]}
    assert sum(k == "score" for k in kinds.values()) == 2  # paper B's P-CDM and a smaller one
    latents = {n: frontier.model_config(config, n)["latent"] for n in kinds if kinds[n] != "score"}
    modes = sorted(
        latent_model.training_mode({"model": {"kind": "latent"}, "latent": v})
        for v in latents.values()
    )
    assert modes.count("joint") >= 3 and "two_stage" in modes
    assert {tuple(s) for s in section["samplers"]} == {
        ("euler_maruyama", 10),
        ("dpm_solver", 2),
        ("dpm_solver", 4),
    }
    assert section["timing_batches"] == [1, 100]
    for name in kinds:  # every model condition on ω only (paper B)
        assert frontier.model_config(config, name)["model"]["conditions"] == ["omega"]


# --- Pareto flags, FLOPs ---------------------------------------------------------------------


def test_the_planned_run_is_the_budget_over_the_step_time_with_a_short_warm_up() -> None:
    """…and checkpoints at least every `CHECKPOINT_SECONDS` of measured step time."""
    config = tiny_frontier()
    config["frontier"]["train_seconds"] = 100.0
    config["training"]["warmup_steps"] = 100
    plan = {
        name: {"key": frontier._plan_key(frontier.model_config(config, name), 100.0), **timing}
        for name, timing in (
            ("pcdm", {"step_seconds": 0.05}),
            ("lcdm_two_stage", {"step_seconds": 3.0}),
        )
    }
    pcdm = frontier._planned(config, "pcdm", plan)
    assert pcdm["training"]["num_steps"] == 2000 and pcdm["training"]["warmup_steps"] == 100
    two = frontier._planned(config, "lcdm_two_stage", plan)
    assert two["latent"]["stage1_steps"] == two["training"]["num_steps"] == 33
    assert two["training"]["warmup_steps"] == 3  # a tenth of the run
    assert pcdm["training"]["checkpoint_every"] == 1000  # the config's, already within 300 s
    assert two["training"]["checkpoint_every"] == int(budget.CHECKPOINT_SECONDS / 3.0)
    with pytest.raises(ValueError, match="'lcdm' has no current plan"):
        frontier._planned(config, "lcdm", plan)
    config["frontier"]["train_seconds"] = 50.0  # another budget: plan again
    with pytest.raises(ValueError, match="'pcdm' has no current plan"):
        frontier._planned(config, "pcdm", plan)


def test_pareto_flags_the_undominated_points() -> None:
    points = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.6), (3.0, 0.4), (0.5, 0.9), (math.nan, 0.1)]
    assert frontier.pareto(points) == [True, True, False, False, True, False]
    assert frontier.pareto([(1.0, 1.0), (1.0, 1.0)]) == [True, True]  # equal points: both


def _tiny_models():
    config = frontier.model_config(tiny_frontier(), "pcdm")
    stats = {n: {"mean": 0.0, "std": 1.0} for n in ("omega", "target", "sparse_interpolated")}
    pcdm = conditional.from_config(config, stats)
    lcfg = frontier.model_config(tiny_frontier(), "lcdm")
    lcdm = latent_model.from_config(lcfg, stats)
    return config, pcdm, lcdm


def test_sample_flops_count_nfe_score_evaluations_plus_the_encodings() -> None:
    config, pcdm, lcdm = _tiny_models()
    key = jax.random.PRNGKey(0)
    cond = {"omega": jax.random.normal(key, (2, 16, 16))}
    t = jnp.full((2,), 0.1)
    for model in (pcdm, lcdm):
        params = model.init(key, 16)
        counts = {}
        for steps in (2, 4):
            sampler = conditional.sampler_from_config(config["sampler"], num_steps=steps)
            counts[steps] = offline.sample_flops(model, params, cond, sampler)
        if math.isnan(counts[2]):
            pytest.skip("this backend gives no FLOP count")
        # two more score evaluations: the difference is exactly two of them
        flat = dataclasses.replace(model, batch_chunk=None)
        if model is pcdm:
            x, f = cond["omega"], flat.encode(params, cond)
            step = flops.xla_flops(
                lambda p, x, t, f, m=flat: m.score_fn(p, f)(x, t), params, x, t, f
            )
        else:
            x = jnp.zeros((2, 8, 8))
            f = flat.condition_features(
                params["score"], flat.encode(params, "omega", cond["omega"])
            )
            step = flops.xla_flops(
                lambda p, x, t, f, m=flat: m.score_fn(p["score"], f)(x, t), params, x, t, f
            )
        assert step > 0
        assert counts[4] - counts[2] == pytest.approx(2 * step, rel=1e-9)
        assert counts[2] > 2 * step  # and the encodings on top


def _entry(model: str, kind: str, sampler: str, nfe: int, error: float, seconds: float) -> dict:
    return {
        "model": model,
        "kind": kind,
        "sampler": sampler,
        "num_steps": nfe,
        "nfe": nfe,
        "ensemble_mean": error,
        "seconds_b100": seconds,
    }


def test_efficient_latent_is_the_cheapest_latent_model_within_the_tolerance() -> None:
    results = {
        "cost": "seconds_b100",
        "entries": [
            _entry("pcdm", "score", "euler_maruyama", 10, 0.100, 2.0),
            _entry("pcdm", "score", "dpm_solver", 2, 0.200, 0.4),
            _entry("pcdm_small", "score", "euler_maruyama", 10, 0.050, 0.5),  # not latent
            _entry("lcdm", "latent", "euler_maruyama", 10, 0.105, 1.0),  # meets, 2×
            _entry("fast", "latent", "euler_maruyama", 10, 0.111, 0.2),  # 11 % worse: fails
            _entry("fast", "latent", "dpm_solver", 2, 0.21, 0.1),  # meets at DPM, 4×
        ],
    }
    best = frontier.efficient_latent(results, "pcdm", 0.1)
    assert (best["model"], best["sampler"], best["nfe"]) == ("fast", "dpm_solver", 2)
    assert best["speedup"] == pytest.approx(4.0) and best["reference_ensemble_mean"] == 0.2
    em = frontier.efficient_latent(results, "pcdm", 0.1, ("euler_maruyama", 10))
    assert (em["model"], em["speedup"]) == ("lcdm", pytest.approx(2.0))
    strict = frontier.efficient_latent(results, "pcdm", 0.01, ("euler_maruyama", 10))
    assert isinstance(strict, str) and "no latent model is within 1%" in strict
    assert "no entry of the reference model 'x'" in frontier.efficient_latent(results, "x")


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from closurejax.data import generate

    workdir = tmp_path_factory.mktemp("frontier")
    config = tiny_frontier()
    generate.generate(config, workdir, show_progress=False, log=lambda _: None)
    lines: list[str] = []
    results = frontier.run_frontier(config, workdir, show_progress=False, log=lines.append)
    return config, workdir, results, lines


@pytest.mark.slow  # three tiny models planned, trained, scored and timed: ≈ 2 min on 2 cores
def test_every_model_and_sampler_gets_an_entry_with_the_issue_keys(finished) -> None:
    config, workdir, results, _ = finished
    assert results == json.loads((workdir / "frontier" / "frontier.json").read_text())
    assert (workdir / "frontier" / "frontier.png").stat().st_size > 0
    entries = results["entries"]
    assert [(e["model"], e["sampler"]) for e in entries] == [
        (m, s) for m in ("pcdm", "lcdm", "lcdm_two_stage") for s in ("euler_maruyama", "dpm_solver")
    ]
    keys = {
        "model",
        "sampler",
        "nfe",
        "single",
        "ensemble_mean",
        "crps",
        "spread_skill",
        "gflop_per_sample",
        "seconds_b1",
        "seconds_b3",
        "pareto",
    }
    for e in entries:
        assert keys <= set(e)
        for k in keys - {"model", "sampler", "pareto"}:
            assert np.isfinite(e[k]) and e[k] > 0, (e["model"], e["sampler"], k)
        if e["model"].startswith("lcdm"):
            assert set(e["reconstruction"]) == {"target", "omega"}
            assert e["latent_std"] > 0
    assert any(e["pareto"] for e in entries)
    # the flags are those of the (cost, error) points
    flags = frontier.pareto([(e["seconds_b3"], e["ensemble_mean"]) for e in entries])
    assert [e["pareto"] for e in entries] == flags
    # every model ran for its planned steps, planned from the budget and its step time
    plan = json.loads((workdir / "frontier" / "plan.json").read_text())
    for name, facts in results["models"].items():
        assert facts["planned_steps"] == plan[name]["steps"] >= 1
        assert facts["train_seconds"] > 0
    assert plan["pcdm"]["steps"] == max(1, int(1.0 / plan["pcdm"]["step_seconds"]))
    assert plan["pcdm"]["timed_steps"] == 2  # tiny steps: all plan_steps timed
    two = results["models"]["lcdm_two_stage"]["planned_steps"]
    assert two == max(1, int(1.0 / plan["lcdm_two_stage"]["step_seconds"]))
    # the scratch runs of the plan are gone
    assert not (workdir / "frontier" / "plan_scratch").exists() or not any(
        (workdir / "frontier" / "plan_scratch").iterdir()
    )
    table = frontier.format_results(results)
    assert len(table.splitlines()) == 1 + len(entries)


@pytest.mark.slow
def test_a_second_run_reuses_plan_runs_and_entries_and_a_change_is_scored_again(
    finished, tmp_path
) -> None:
    config, workdir, results, _ = finished
    entries = workdir / "frontier" / "entries"
    before = {p.name: p.stat().st_mtime_ns for p in entries.iterdir()}
    plan_before = (workdir / "frontier" / "plan.json").read_text()
    lines: list[str] = []
    again = frontier.run_frontier(config, workdir, show_progress=False, log=lines.append)
    assert {p.name: p.stat().st_mtime_ns for p in entries.iterdir()} == before
    assert (workdir / "frontier" / "plan.json").read_text() == plan_before
    assert not any("timing" in line or "scoring" in line for line in lines)
    assert [e["ensemble_mean"] for e in again["entries"]] == [
        e["ensemble_mean"] for e in results["entries"]
    ]
    # one more sampler: only its entries are new
    config = json.loads(json.dumps(config))
    config["frontier"]["samplers"].append(["dpm_solver", 3])
    lines.clear()
    more = frontier.run_frontier(
        config, workdir, stages=("evaluate",), show_progress=False, log=lines.append
    )
    assert len(more["entries"]) == len(results["entries"]) + 3
    assert sum("scoring" in line for line in lines) == 3
    written = frontier.export_frontier(workdir, tmp_path / "results")
    assert sorted(p.name for p in written) == ["frontier.json", "frontier.png"]
    assert json.loads(written[0].read_text()) == more


@pytest.mark.slow
def test_the_online_stage_runs_the_cheapest_latent_model_meeting_the_bar(finished) -> None:
    config, workdir, results, _ = finished
    config = json.loads(json.dumps(config))
    skip = json.loads(json.dumps(config))
    skip["sampler"]["num_steps"] = 3  # the online sampler was not scored: nothing to choose
    out = frontier.run_frontier(skip, workdir, stages=("online",), show_progress=False)
    assert "(3 steps) (0 latent entries compared)" in out["online"]["skipped"]
    config["frontier"]["tolerance"] = 1e6  # every latent model meets it: the cheapest runs
    lines: list[str] = []
    out = frontier.run_frontier(
        config, workdir, stages=("online",), show_progress=False, log=lines.append
    )
    choice = frontier.efficient_latent(
        out, "pcdm", 1e6, (config["sampler"]["name"], config["sampler"]["num_steps"])
    )
    online = out["online"]
    assert online["latent_model"] == choice["model"] and online["reference_model"] == "pcdm"
    assert online["members"] == 2 and online["t"] == [0.03, 0.05]
    for name in frontier.ONLINE_SOURCES:
        assert len(online[name]) == 2 and all(np.isfinite(online[name])), name
        assert online["seconds"][name] > 0
    assert online["reference"][-1] < online["none"][-1]  # the exact closure beats none
    assert json.loads((workdir / "frontier" / "frontier.json").read_text())["online"] == online
