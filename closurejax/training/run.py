"""Training and loading closure models from a study config (used by experiments/train.py,
experiments/evaluate_offline.py and the demo).

Layout of a study workdir: `<workdir>/dataset` and `<workdir>/zero_shot` (experiments/
generate_data.py), `<workdir>/<run>/checkpoints` and `<workdir>/<run>/metrics.jsonl` for each
trained model (`run` = "score" or "regression" by default, the model kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from closurejax.data import generate, pipeline, store
from closurejax.diffusion import conditional
from closurejax.training import trainer as trainer_lib


def optim_from_config(training: Mapping[str, Any]) -> trainer_lib.OptimConfig:
    """`OptimConfig` from the `training` config section."""
    clip = float(training["grad_clip_norm"])
    return trainer_lib.OptimConfig(
        learning_rate=float(training["learning_rate"]),
        schedule=training["schedule"],
        decay_factor=float(training["decay_factor"]),
        decay_every_epochs=int(training["decay_every_epochs"]),
        warmup_steps=int(training["warmup_steps"]),
        grad_clip_norm=clip if clip > 0 else None,
        ema_decay=float(training["ema_decay"]),
        weight_decay=float(training["weight_decay"]),
        num_epochs=int(training["num_epochs"]),
    )


def open_study_dataset(config: Mapping[str, Any], data_dir: str | Path) -> store.Dataset:
    """Opens (and verifies) the dataset of `config` in `data_dir`, refusing a mismatched one."""
    return store.open_dataset(Path(data_dir), expected_config=generate.dataset_config(config))


def build_trainer(
    config: Mapping[str, Any],
    workdir: str | Path,
    data_dir: str | Path | None = None,
    run_name: str | None = None,
    show_progress: bool = True,
) -> tuple[conditional.ClosureModel, trainer_lib.Trainer]:
    """The closure model of `config` and a Trainer on `<workdir>/<run_name>` (restored if a
    checkpoint is there; its architecture must match, else IncompatibleCheckpointError)."""
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    workdir = Path(workdir).resolve()
    data = open_study_dataset(config_dict, data_dir or workdir / "dataset")
    model = conditional.from_config(config_dict, data.stats)
    training = config_dict["training"]
    names = [*model.condition_names, "target"]
    unit = {name: {"mean": 0.0, "std": 1.0} for name in names}  # the model normalises itself
    batches = pipeline.Batches(
        pipeline.trajectory_fields(data, "train", names),
        names,
        batch_size=int(training["batch_size"]),
        seed=int(training["seed"]),
        stats=unit,
        sample_axes=2,
    )
    n = data.specs["target"].shape[-1]
    run_name = run_name or model.kind
    trainer = trainer_lib.Trainer(
        init_fn=lambda key: model.init(key, n),
        loss_fn=model.loss,
        batches=batches,
        optim=optim_from_config(training),
        workdir=workdir / run_name,
        seed=int(training["seed"]),
        checkpoint_every=int(training["checkpoint_every"]),
        keep=int(training["keep"]),
        log_every=int(training["log_every"]),
        show_progress=show_progress,
        config=config_dict,
    )
    return model, trainer


def train(
    config: Mapping[str, Any],
    workdir: str | Path,
    data_dir: str | Path | None = None,
    num_steps: int | None = None,
    run_name: str | None = None,
    show_progress: bool = True,
) -> tuple[conditional.ClosureModel, Any]:
    """Trains (or resumes) the closure model of `config`; returns (model, final state)."""
    model, trainer = build_trainer(config, workdir, data_dir, run_name, show_progress)
    with trainer:
        state = trainer.train(num_steps)
        state = jax.device_get(state)
    return model, state


def load(
    config: Mapping[str, Any],
    workdir: str | Path,
    data_dir: str | Path | None = None,
    run_name: str | None = None,
    use_ema: bool = True,
) -> tuple[conditional.ClosureModel, Any]:
    """(model, parameters) of the latest checkpoint of a trained run; clear error if none."""
    model, trainer = build_trainer(config, workdir, data_dir, run_name, show_progress=False)
    with trainer:
        if trainer.step == 0:
            raise FileNotFoundError(
                f"no checkpoint of a trained '{run_name or model.kind}' model under "
                f"{Path(workdir).resolve()}; run experiments/train.py first"
            )
        state = jax.device_get(trainer.state)
    return model, state.ema_params if use_ema else state.params
