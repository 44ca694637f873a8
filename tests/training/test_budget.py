"""A run sized by wall-clock time (closurejax.training.budget): the plan's arithmetic, its key,
and a tiny study trained, resumed, re-planned and loaded under a budget."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from closurejax.data import generate
from closurejax.training import budget, run
from tests.training.test_run import tiny_study


def test_steps_warmup_and_checkpoint_cadence_follow_the_budget() -> None:
    assert budget.steps_for(10.0, 0.3) == 33
    assert budget.steps_for(0.1, 5.0) == 1  # a budget shorter than a step still trains one
    config = tiny_study()
    config["training"].update(warmup_steps=100, checkpoint_every=1000)
    planned = budget.with_steps(config, 600.0, 0.5)  # 1200 steps
    assert planned["training"]["num_steps"] == 1200
    assert planned["training"]["warmup_steps"] == 100  # ≤ a tenth of the run: kept
    assert planned["training"]["checkpoint_every"] == int(budget.CHECKPOINT_SECONDS / 0.5)
    short = budget.with_steps(config, 30.0, 0.5)  # 60 steps
    assert short["training"]["warmup_steps"] == 6 and short["training"]["num_steps"] == 60
    assert config["training"]["warmup_steps"] == 100  # the input is not changed


def test_the_plan_key_ignores_the_run_length_and_nothing_else() -> None:
    config = tiny_study()
    key = budget.plan_key(config, 60.0)
    longer = json.loads(json.dumps(config))
    longer["training"].update(num_epochs=99, num_steps=7, warmup_steps=3, train_seconds=5.0)
    longer["name"] = "other"
    assert budget.plan_key(longer, 60.0) == key
    assert budget.plan_key(config, 61.0) != key
    wider = json.loads(json.dumps(config))
    wider["training"]["batch_size"] += 1
    assert budget.plan_key(wider, 60.0) != key


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "60", True])
def test_a_bad_budget_is_refused_in_one_line(value: object) -> None:
    with pytest.raises(ValueError, match=r"^training\.train_seconds=.* is invalid; allowed: a"):
        budget.check_seconds(value)


@pytest.mark.slow  # ≈ 60 s on 2 cores (six compilations): `make test-slow` (and CI) runs it
def test_a_budgeted_run_trains_the_planned_steps_resumes_and_loads(tmp_path) -> None:
    config = tiny_study()
    generate.generate(config, tmp_path, show_progress=False, log=lambda _: None)
    config["training"].update(train_seconds=0.3, num_epochs=1000, checkpoint_every=10**6)
    lines: list[str] = []
    _, state = run.train(config, tmp_path, show_progress=False, log=lines.append)
    plan = json.loads((tmp_path / "score" / budget.PLAN_FILE).read_text())
    assert plan["steps"] == budget.steps_for(0.3, plan["step_seconds"]) >= 1
    assert int(state.step) == plan["steps"] < 1000 * plan["steps_per_epoch"]
    assert any(line.startswith("plan: timing") for line in lines)
    assert not (tmp_path / "score.plan_scratch").exists()  # the timing run is deleted

    lines.clear()  # the same command again: the stored plan, nothing left to train
    _, again = run.train(config, tmp_path, show_progress=False, log=lines.append)
    assert int(again.step) == plan["steps"] and not any("plan:" in line for line in lines)
    _, params = run.load(config, tmp_path, use_ema=False)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, b)

    config["training"]["train_seconds"] = 0.6  # a larger budget: planned again, the run continues
    _, longer = run.train(config, tmp_path, show_progress=False)
    replanned = json.loads((tmp_path / "score" / budget.PLAN_FILE).read_text())
    assert replanned["train_seconds"] == 0.6
    assert int(longer.step) == max(replanned["steps"], plan["steps"])

    config["sampler"]["num_steps"] += 1  # a sampling setting: the plan and the run are kept
    lines.clear()
    _, same = run.train(config, tmp_path, show_progress=False, log=lines.append)
    assert int(same.step) == int(longer.step) and not any("plan:" in line for line in lines)
