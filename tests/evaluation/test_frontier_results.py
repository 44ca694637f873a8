"""The committed cost–accuracy frontier (`experiments/results/frontier_h_cpu/`): frontier.json
has the keys the latent-frontier work promises for every model × sampler, its frontier flags and
online decision follow from its own entries, and the README's two tables are frontier.json."""

from __future__ import annotations

import json
from pathlib import Path

from closurejax.evaluation import frontier
from tests.evaluation.test_study_results import readme_table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results" / "frontier_h_cpu"
KEYS = {"model", "sampler", "nfe", "single", "ensemble_mean", "crps", "spread_skill",
        "gflop_per_sample", "seconds_b1", "seconds_b100"}  # fmt: skip
COLUMNS = (("single", ".3f"), ("ensemble_mean", ".3f"), ("crps", ".4f"), ("spread_skill", ".2f"),
           ("gflop_per_sample", ".2f"), ("seconds_b1", ".4f"), ("seconds_b100", ".4f"))  # fmt: skip


def results() -> dict:
    return json.loads((RESULTS / "frontier.json").read_text())


def test_every_model_and_sampler_has_the_keys() -> None:
    r = results()
    entries = r["entries"]
    models = {e["model"] for e in entries}
    samplers = {(e["sampler"], e["nfe"]) for e in entries}
    assert models == set(r["models"])
    assert (
        len(entries)
        == len(models) * len(samplers)
        == len({(e["model"], e["sampler"], e["nfe"]) for e in entries})
    )
    for e in entries:
        assert KEYS <= set(e), e["model"]
        if e["kind"] == "latent":
            assert {"latent_std", "reconstruction"} <= set(e), e["model"]
    # the flags are the frontier of (cost at batch 100, ensemble-mean error)
    flags = frontier.pareto([(e[r["cost"]], e["ensemble_mean"]) for e in entries])
    assert flags == [e["pareto"] for e in entries]


def test_the_online_stage_follows_the_accuracy_bar() -> None:
    r = results()
    # frontier_h_cpu: reference pcdm, tolerance 10 %, online sampler 10-step Euler–Maruyama
    choice = frontier.efficient_latent(r, "pcdm", 0.1, ("euler_maruyama", 10))
    if isinstance(choice, str):
        assert r["online"] == {"skipped": choice}
    else:
        assert "skipped" not in r["online"]


def test_the_readme_tables_are_frontier_json() -> None:
    r = results()
    rows = readme_table("frontier.json")
    assert len(rows) == len(r["entries"])
    for e in r["entries"]:
        label = f"{e['model']}, {e['sampler']} {e['nfe']}" + (" ★" if e["pareto"] else "")
        assert rows[label] == [format(e[k], f) for k, f in COLUMNS], label
    models = readme_table("frontier.json: models")
    assert set(models) == set(r["models"])
    for name, m in r["models"].items():
        cells = models[name]
        assert cells[0] == f"{m['params']:,}".replace(",", " ")
        assert cells[1:3] == [str(m["planned_steps"]), f"{m['step_seconds']:.2f}"]
        e = next(x for x in r["entries"] if x["model"] == name)
        if e["kind"] == "latent":
            rec = e["reconstruction"]
            assert cells[3:] == [
                f"{e['latent_std']:.2f}",
                f"{rec['omega']:.3f} / {rec['target']:.3f}",
            ]
        else:
            assert cells[3:] == ["–", "–"]
