"""A training run sized by wall-clock time instead of epochs: steps = ⌊budget ÷ seconds per step⌋.

A run's length in epochs fits one machine: the same 95 000 steps take minutes on one accelerator
and days on a CPU. With `training.train_seconds` > 0 the run's length is *planned* on the machine
it trains on: a scratch run times a few training steps after the compiling one (`measure_step`),
the budget buys ⌊train_seconds ÷ median step time⌋ steps (`steps_for`), and the run trains that
many (`with_steps`: also a learning-rate warm-up of at most a tenth of the run, and a checkpoint
at least every `CHECKPOINT_SECONDS`). The plan is stored beside the run (`plan.json`) under a
key of everything the step time depends on (`plan_key`), so a resumed run — on this machine or
another — keeps its length and schedule, and a changed config or budget is planned again.

The budget is the optimiser's time, not the stage's: data loading, compilation, checkpoints and
the timing steps come on top. The cost–accuracy frontier
(`closurejax.evaluation.frontier`) plans its models with the same functions.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from closurejax import atomic
from closurejax.diffusion import conditional, latent_model
from closurejax.keys import digest
from closurejax.training import trainer as trainer_lib

__all__ = [
    "CHECKPOINT_SECONDS",
    "PLAN_EXTRA_SECONDS",
    "PLAN_FILE",
    "PLAN_OMITS",
    "check_seconds",
    "measure_step",
    "plan_key",
    "planned",
    "steps_for",
    "with_steps",
]

CHECKPOINT_SECONDS = 300.0
"""A planned run saves a checkpoint at least every this many seconds of its measured step time
(and at its end), so a killed run loses at most this much training when it resumes."""

PLAN_EXTRA_SECONDS = 120.0
"""`measure_step` times one step after the compiling one, and times more only if they take at
most this long together (a model whose step takes minutes is timed on one step)."""

PLAN_FILE = "plan.json"
"""The plan of a budgeted run, in its run folder (for the two-stage latent baseline, the folder of
both stages)."""

RUN_LENGTH = {
    "training": ("num_epochs", "num_steps", "warmup_steps", "train_seconds"),
    "latent": ("stage1_epochs", "stage1_steps"),
}
"""The fields a plan sets or is sized by: left out of `plan_key` (the step time does not depend
on them)."""

TrainFn = Callable[..., Any]
"""`closurejax.training.run.train` (passed in: this module sits below it)."""


def check_seconds(value: Any, field: str = "training.train_seconds") -> float:
    """A wall-clock budget as float: a finite number ≥ 0 (0 = no budget), else a one-line error."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0:
        raise ValueError(
            f"{field}={value!r} is invalid; allowed: a finite number of seconds >= 0 (0: the "
            "run's length is num_steps or num_epochs)"
        )
    return float(value)


def steps_for(seconds: float, step_seconds: float) -> int:
    """The training steps a budget of `seconds` buys at `step_seconds` per step (≥ 1)."""
    return max(1, int(seconds / step_seconds))


def plan_key(config: Mapping[str, Any], seconds: float, omit: tuple[str, ...] = ()) -> str:
    """What a plan depends on: `config` less its run-length fields (`RUN_LENGTH`), its `name`
    and the sections named in `omit`, and the budget `seconds` (SHA-256, `closurejax.keys`); the
    diffusion section as `conditional.diffusion_identity` keys it."""
    config = json.loads(json.dumps(config))
    for section, fields in RUN_LENGTH.items():
        for field in fields:
            config.get(section, {}).pop(field, None)
    for section in ("name", *omit):
        config.pop(section, None)
    if "diffusion" in config:
        config["diffusion"] = conditional.diffusion_identity(config["diffusion"])
    return digest({"model": config, "train_seconds": seconds})


def _two_stage(config: Mapping[str, Any]) -> bool:
    """`closurejax.training.run.is_two_stage` (that module sits above this one)."""
    is_latent = config["model"]["kind"] == latent_model.KIND
    return is_latent and latent_model.training_mode(config) == "two_stage"


def measure_step(
    train: TrainFn,
    config: Mapping[str, Any],
    workdir: Path,
    run_name: str,
    steps: int,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Median seconds per training step of `config` (of its first stage for the two-stage latent
    baseline) over up to `steps` steps after one compiling step (`PLAN_EXTRA_SECONDS`), timed in
    the scratch run `<workdir>/<run_name>`, deleted after.

    Returns:
      {"step_seconds", "steps_per_epoch", "timed_steps"}.
    """
    scratch = json.loads(json.dumps(config))
    scratch["training"].update(log_every=1, checkpoint_every=10**9, num_steps=0)
    scratch["training"]["train_seconds"] = 0.0
    two_stage = _two_stage(scratch)
    if two_stage:
        scratch["latent"]["stage1_epochs"] = 10**6
        scratch["latent"]["stage1_steps"] = 0
    else:
        scratch["training"]["num_epochs"] = 10**6
    folder = Path(workdir) / run_name
    # a two-stage run times its first stage, `run.LATENT_STAGES[0]`
    metrics = (folder / "autoencoders" if two_stage else folder) / "metrics.jsonl"
    batch = int(config["training"]["batch_size"])
    shutil.rmtree(folder, ignore_errors=True)

    def timed_steps(skip: tuple[int, ...] = (1,)) -> list[float]:
        # the first step of each `train` call includes its compilation
        records = trainer_lib.read_metrics(metrics)
        return [batch / r["samples_per_s"] for r in records if r["step"] not in skip]

    def run(num_steps: int) -> None:
        train(
            scratch, workdir, data_dir, num_steps=num_steps, run_name=run_name, show_progress=False
        )

    try:
        run(2)
        first = timed_steps()[0]
        if steps > 1 and first * (steps - 1) <= PLAN_EXTRA_SECONDS:
            run(2 + steps)
            timed = timed_steps(skip=(1, 3))
        else:
            timed = [first]
        record = trainer_lib.read_metrics(metrics)[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "step_seconds": statistics.median(timed),
        "steps_per_epoch": int(round(record["step"] / record["epoch"])),
        "timed_steps": len(timed),
    }


def with_steps(config: Mapping[str, Any], seconds: float, step_seconds: float) -> dict[str, Any]:
    """`config` (a copy) with the run length a budget of `seconds` buys at `step_seconds` per step
    (the two-stage baseline: that many steps for each stage), a learning-rate warm-up of at most a
    tenth of the run (a run shorter than the configured warm-up would never reach its learning
    rate), and a checkpoint at least every `CHECKPOINT_SECONDS` of training."""
    config = json.loads(json.dumps(config))
    steps = steps_for(seconds, step_seconds)
    if _two_stage(config):
        config["latent"]["stage1_steps"] = steps
    training = config["training"]
    training["num_steps"] = steps
    training["warmup_steps"] = min(int(training["warmup_steps"]), steps // 10)
    cadence = max(1, int(CHECKPOINT_SECONDS / step_seconds))
    training["checkpoint_every"] = min(int(training["checkpoint_every"]), cadence)
    return config


PLAN_OMITS = ("sampler", "evaluation", "simulation", "frontier")
"""Config sections a run's plan does not depend on (sampling and evaluation settings: changing
them does not re-plan a trained run)."""


def planned(
    train: TrainFn,
    config: Mapping[str, Any],
    workdir: Path,
    folder: Path,
    data_dir: str | Path | None = None,
    measure: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """`config` with its run length planned from `training.train_seconds` (unchanged when 0).

    Training (`measure`): reads the plan in `<folder>/plan.json` when its key is `config`'s
    (`plan_key` less `PLAN_OMITS`); otherwise times the step (`measure_step`, scratch run
    `<folder>.plan_scratch`) and writes a new plan atomically. Loading (not `measure`): the
    stored plan whatever its key (the length the run was trained for), or `config` unchanged
    when there is none (the parameters do not depend on it).
    """
    seconds = check_seconds(config["training"].get("train_seconds", 0.0))
    if seconds == 0:
        return json.loads(json.dumps(config))
    path = folder / PLAN_FILE
    stored = json.loads(path.read_text()) if path.exists() else None
    if not measure:
        if stored is None:
            return json.loads(json.dumps(config))
        return with_steps(config, float(stored["train_seconds"]), stored["step_seconds"])
    key = plan_key(config, seconds, omit=PLAN_OMITS)
    if stored is None or stored.get("key") != key:
        log(f"plan: timing the training step for a budget of {seconds:g} s …")
        scratch = folder.relative_to(Path(workdir).resolve()).as_posix() + ".plan_scratch"
        measured = measure_step(train, config, workdir, scratch, 5, data_dir)
        stored = {"key": key, "train_seconds": seconds, **measured}
        stored["steps"] = steps_for(seconds, measured["step_seconds"])
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, stored)
        log(
            f"plan: {measured['step_seconds']:.4g} s per step → {stored['steps']} steps in "
            f"{seconds:g} s (written to {path})"
        )
    return with_steps(config, seconds, stored["step_seconds"])
