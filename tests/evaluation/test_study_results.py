"""The committed results of the CPU reproduction study (`experiments/results/paper_a_h_cpu/`):
summary.json parses and agrees with the README's tables, and the exported weights are the
study config's models (arXiv 2408.02965, the H study at 64²)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from closurejax.config import base_config
from closurejax.diffusion import conditional
from closurejax.evaluation import study as study_lib
from experiments.configs import paper_a_h_cpu

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results" / "paper_a_h_cpu"

OFFLINE_COLUMNS = (("single", 3), ("ensemble_mean", 3), ("regression", 3), ("crps", 4))
OFFLINE_COLUMNS += (("spread_skill", 2),)
ONLINE_ROWS = {
    "none": ("none", 3),
    "diffusion, EM 10": ("diffusion", 3),
    "diffusion, EM 10, one member": ("diffusion_member", 3),
    "diffusion, DPM-Solver++(2M) 2 NFE": ("diffusion_fast", 3),
    "diffusion, EM 10, coherent noise": ("diffusion_coherent", 3),
    "regression": ("regression", 3),
    "reference (exact H)": ("reference", 3),
    "spread–skill, EM 10": ("diffusion_spread_skill", 2),
    "spread–skill, coherent noise": ("diffusion_coherent_spread_skill", 2),
}


def readme_table(marker: str) -> dict[str, list[str]]:
    """The table right after `<!-- marker -->` in README.md: first cell -> the other cells."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"<!-- {marker} -->") + 1
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:  # header and separator first
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def summary() -> dict:
    return json.loads((RESULTS / "summary.json").read_text())


def test_summary_has_the_issue_shape_and_matches_the_readme_offline_table() -> None:
    s = summary()
    assert s["study"] == "paper_a_h_cpu"
    assert set(s["offline"]) == {"64", "128", "256"}
    rows = readme_table("summary.json: offline")
    assert set(rows) == {"64²", "128²", "256²"}
    for size, entry in s["offline"].items():
        cells = rows[f"{size}²"]
        for i, (key, digits) in enumerate(OFFLINE_COLUMNS):
            assert cells[i] == f"{entry[key]:.{digits}f}", (size, key)
    for stage in ("data", "train_score", "train_regression", "offline", "online"):
        assert s["wall_seconds"][stage] > 0


def test_summary_matches_the_readme_online_table() -> None:
    online = summary()["online"]
    assert online["t"] == [35.0, 40.0, 45.0, 50.0]
    rows = readme_table("summary.json: online")
    for label, (key, digits) in ONLINE_ROWS.items():
        assert rows[label] == [f"{v:.{digits}f}" for v in online[key]], label


@pytest.mark.parametrize("kind", ["score", "regression"])
def test_exported_weights_are_the_study_models(kind: str) -> None:
    config = json.loads(json.dumps(paper_a_h_cpu.get_config().to_dict()))  # as stored: JSON types
    model, params, trained_with = study_lib.load_exported(RESULTS / f"{kind}_weights.npz")
    assert trained_with["model"] == {**config["model"], "kind": kind}
    base = json.loads(json.dumps(base_config().to_dict()))
    for section in ("data", "diffusion", "training", "physics"):
        stored = trained_with[section]
        # fields added to the schema after the weights were saved count at their defaults
        newer = {k: base[section][k] for k in config[section] if k not in stored}
        assert {**stored, **newer} == config[section], section
    assert model.condition_names == ("omega", "sparse_interpolated")
    n = config["data"]["coarse_size"]
    cond = {
        name: jax.random.normal(jax.random.PRNGKey(i), (2, n, n))
        for i, name in enumerate(model.condition_names)
    }
    if kind == "score":
        sampler = conditional.sampler_from_config(config["sampler"])
        out = model.sample(params, jax.random.PRNGKey(0), cond, sampler)
    else:
        out = model.predict(params, cond)
    assert out.shape == (2, n, n) and bool(np.all(np.isfinite(out)))
