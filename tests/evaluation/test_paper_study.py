"""The paper-scale studies (`make reproduce STUDY=paper_a_h` / `paper_b`, sized for an accelerator)
run end to end on a CPU when shrunk: every stage of `run_study` on the paper config with only its
sizes overridden (grids, trajectories, network width, the training budget, ensembles, the online
window), so the configs and the one-command study cannot rot."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from closurejax.evaluation import study as study_lib
from closurejax.training import budget
from tests.tiny import TINY_DATA, TINY_SIMULATION


def shrunk(name: str) -> dict:
    """The paper config `name` with its sizes shrunk to a 32² DNS → 16² study of seconds; its
    physics, conditions, diffusion, sampler and sources stay the paper's."""
    config = importlib.import_module(f"experiments.configs.{name}").get_config().to_dict()
    config["data"].update(TINY_DATA, coarse_size=16, num_trajectories=3, num_test=1)
    config["physics"]["noise_modes"] = 7  # the band must fit the 16² solver
    config["model"].update(width=8, modes=4, depth=2, embed_dim=16)
    config["training"].update(batch_size=4, train_seconds=1.0, log_every=1)
    config["evaluation"].update(ensemble_size=3, max_snapshots=2)
    config["sampler"]["num_steps"] = 2
    config["simulation"].update(TINY_SIMULATION, animation=False)
    return config


@pytest.mark.slow  # ≈ 3 min each on 2 cores
@pytest.mark.parametrize("name", ["paper_a_h", "paper_b"])
def test_the_paper_study_runs_every_stage_when_shrunk(name: str, tmp_path) -> None:
    config = shrunk(name)
    lines: list[str] = []
    summary = study_lib.run_study(config, tmp_path, show_progress=False, log=lines.append)
    assert set(summary["wall_seconds"]) == set(study_lib.STAGES)
    assert set(summary["offline"]) == {"16", "32"}
    for entry in summary["offline"].values():
        assert all(np.isfinite(v) and v > 0 for v in entry.values())
    for source in ("none", "diffusion", "regression", "reference"):
        assert len(summary["online"][source]) == 2, source
    # both models trained for the paper config's budget, planned on this machine
    for run_name in ("score", "regression"):
        plan = json.loads((tmp_path / run_name / budget.PLAN_FILE).read_text())
        assert plan["train_seconds"] == 1.0
        assert plan["steps"] == budget.steps_for(1.0, plan["step_seconds"])
    assert sum(line.startswith("plan: ") and "steps in 1 s" in line for line in lines) == 2
