"""Training and loading closure models from a study config (used by experiments/train.py,
experiments/evaluate_offline.py and the demo).

Layout of a study workdir: `<workdir>/dataset` and `<workdir>/zero_shot` (experiments/
generate_data.py), `<workdir>/<run>/checkpoints` and `<workdir>/<run>/metrics.jsonl` for each
trained model. `run` is the model kind by default: "score" (P-CDM), "regression", or, for paper
B's latent model (`model.kind = "latent"`, closurejax.diffusion.latent_model):

* `latent.training_mode = "joint"`: one run `<workdir>/latent` — one optimiser over both
  autoencoders and the latent score network (`LatentDiffusionModel.loss`);
* `latent.training_mode = "two_stage"`: `<workdir>/latent_two_stage/autoencoders` (stage 1: the
  autoencoders on `reconstruction_loss` for `latent.stage1_epochs` epochs or
  `latent.stage1_steps` steps), then
  `<workdir>/latent_two_stage/score` (stage 2: the training set encoded with the frozen stage-1
  EMA encoders, the latent score fitted on those latents by `latent_loss` for
  `training.num_epochs` epochs). Each stage is one `Trainer` run (exact resume, checkpoints,
  metrics.jsonl); stage 2 records a digest of the stage-1 parameters it was trained on and refuses
  to resume on another stage-1 result.

`load` returns `(model, params)` for every kind; for the latent kind `params` is
`{"target_ae", "omega_ae", "score"}`, the argument of `LatentDiffusionModel.sample`.

A score network is tied to the SDE it was trained with: restoring a checkpoint of a run with a
score network (kind "score", the joint latent run, stage 2 of the two-stage one) for training or
loading refuses a `diffusion` section that differs from the checkpoint's (`check_diffusion`),
naming the field and both values. `train` says in one line what a (re)start does: train from
step 0, resume to the (possibly changed) end, or nothing, when the checkpoint is already there.

Checkpoints are verified against the checksum saved with them (closurejax.training.checkpoint):
`load` refuses a corrupt latest checkpoint (`CorruptCheckpointError`, one line naming it), `train`
resumes from the newest intact one with a `CheckpointWarning` naming the skipped ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from closurejax import locking
from closurejax.config_section import as_dict
from closurejax.data import generate, pipeline, store
from closurejax.diffusion import kinds, latent_model
from closurejax.training import budget
from closurejax.training import trainer as trainer_lib
from closurejax.training.checkpoint import IncompatibleCheckpointError
from closurejax.training.state import TrainState

__all__ = [
    "LATENT_STAGES",
    "MODEL_KINDS",
    "TwoStageState",
    "build_trainer",
    "check_diffusion",
    "check_model_kind",
    "default_run_name",
    "final_stage",
    "is_two_stage",
    "load",
    "model_from_config",
    "open_study_dataset",
    "optim_from_config",
    "params_digest",
    "run_dir",
    "run_folder",
    "train",
]

LATENT_STAGES = ("autoencoders", "score")
"""The two runs of the two-stage latent baseline, in training order."""

MODEL_KINDS = kinds.NAMES
"""Every `model.kind` (`closurejax.diffusion.kinds`)."""

Model = kinds.Model


def optim_from_config(training: Mapping[str, Any]) -> trainer_lib.OptimConfig:
    """`OptimConfig` from the `training` config section: the run's length is `num_steps` when
    > 0 (absent in configs saved before it was a field: 0), else `num_epochs` epochs."""
    clip = float(training["grad_clip_norm"])
    num_steps = training.get("num_steps", 0)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(
            f"training.num_steps={num_steps!r} is invalid; allowed: 0 (use num_epochs) or an "
            "int ≥ 1"
        )
    return trainer_lib.OptimConfig(
        learning_rate=float(training["learning_rate"]),
        schedule=training["schedule"],
        decay_factor=float(training["decay_factor"]),
        decay_every_epochs=int(training["decay_every_epochs"]),
        warmup_steps=int(training["warmup_steps"]),
        grad_clip_norm=clip if clip > 0 else None,
        ema_decay=float(training["ema_decay"]),
        weight_decay=float(training["weight_decay"]),
        num_epochs=None if num_steps else int(training["num_epochs"]),
        num_steps=num_steps or None,
    )


def open_study_dataset(config: Mapping[str, Any], data_dir: str | Path) -> store.Dataset:
    """Opens (and verifies) the dataset of `config` in `data_dir`, refusing a mismatched one."""
    return store.open_dataset(Path(data_dir), expected_config=generate.dataset_config(config))


def _is_latent(config: Mapping[str, Any]) -> bool:
    return config["model"]["kind"] == latent_model.KIND


def is_two_stage(config: Mapping[str, Any]) -> bool:
    """Whether `config` trains paper B's two-stage latent baseline (two runs, `LATENT_STAGES`)."""
    config = as_dict(config)
    return _is_latent(config) and latent_model.training_mode(config) == "two_stage"


def default_run_name(config: Mapping[str, Any]) -> str:
    """The run folder `run_dir` uses without a `run_name`: `model.kind`, and for the two-stage
    latent baseline "latent_two_stage" (the folder of both its stages)."""
    return "latent_two_stage" if is_two_stage(config) else as_dict(config)["model"]["kind"]


def final_stage(config: Mapping[str, Any]) -> str | None:
    """The `stage` of `run_dir` whose checkpoints hold the trained model's score network:
    "score" for the two-stage latent baseline, None (the one run) for every other config."""
    return LATENT_STAGES[-1] if is_two_stage(config) else None


model_from_config = kinds.from_config


def check_model_kind(kind: Any) -> None:
    """Refuses a `model.kind` that is none of `MODEL_KINDS`, in one line listing them."""
    kinds.get(kind)


def run_dir(
    config: Mapping[str, Any],
    workdir: str | Path,
    run_name: str | None = None,
    stage: str | None = None,
) -> Path:
    """The run folder of `config`: `<workdir>/<run_name or default_run_name(config)>`, and for
    the two-stage latent baseline its `<stage>` below that."""
    config = as_dict(config)
    workdir = Path(workdir).resolve()
    kind = config["model"]["kind"]
    check_model_kind(kind)
    if not is_two_stage(config):
        if stage is not None:
            raise ValueError(
                f"stage={stage!r} applies only to latent.training_mode='two_stage' (model.kind="
                f"{kind!r}" + (", training_mode='joint')" if _is_latent(config) else ")")
            )
        return workdir / (run_name or default_run_name(config))
    if stage not in LATENT_STAGES:
        raise ValueError(
            f"stage={stage!r} is invalid for the two-stage latent baseline; allowed: "
            f"{LATENT_STAGES}"
        )
    return workdir / (run_name or default_run_name(config)) / stage


def params_digest(params: Any) -> str:
    """SHA-256 of a parameter tree's paths, shapes, dtypes and bytes (identifies a stage-1
    result)."""
    digest = hashlib.sha256()
    leaves, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(params))
    for path, leaf in leaves:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_diffusion(
    trained: Mapping[str, Any], config: Mapping[str, Any], where: str | Path = ""
) -> None:
    """Raises `IncompatibleCheckpointError` unless the `diffusion` section of `config` equals
    that of `trained` (the config stored in a checkpoint at `where`), field by field; fields only
    one of them has are skipped (checkpoints of older versions)."""
    theirs = dict(as_dict(trained).get("diffusion", {}))
    ours = dict(as_dict(config).get("diffusion", {}))
    for field in sorted(theirs.keys() & ours.keys()):
        if _plain(theirs[field]) != _plain(ours[field]):
            at = f" {where}" if where else ""
            raise IncompatibleCheckpointError(
                f"the checkpoint{at} was trained with diffusion.{field}={theirs[field]!r}, but the "
                f"config gives diffusion.{field}={ours[field]!r}: a score network only fits the "
                "SDE it was trained with (use the checkpoint's value, or train in another workdir)"
            )


def _plain(value: Any) -> Any:
    """`value` as JSON types (tuples become lists, as in a checkpoint's stored config)."""
    return json.loads(json.dumps(value, default=str))


def _refuse_other_diffusion(trainer: trainer_lib.Trainer, config: Mapping[str, Any]) -> None:
    """`check_diffusion` of the trainer's latest checkpoint (if any) against `config`; closes
    the trainer before raising."""
    latest = trainer.checkpoints.latest_step()
    if latest is None:
        return
    trained = trainer.checkpoints.metadata(latest).get("config", {})
    try:
        check_diffusion(trained, config, trainer.checkpoints.directory / str(latest))
    except IncompatibleCheckpointError:
        trainer.close()
        raise


def _valid_end(end: Any, total: int) -> bool:
    return isinstance(end, int) and not isinstance(end, bool) and 0 <= end <= total


def _plan(trainer: trainer_lib.Trainer, end: int, target: str | None = None) -> str:
    """One line on what `trainer.train(end)` will do from the restored step: start, resume to
    the (possibly changed) end, or nothing. `target` names where `end` comes from (None: the
    configured total, else e.g. "num_steps 5")."""
    start, total = trainer.step, trainer.total_steps
    own_end = target is None
    target = f"the run's end {total}" if target is None else target
    latest = trainer.checkpoints.latest_step()
    before = None if latest is None else trainer.checkpoints.metadata(latest).get("total_steps")
    changed = ""
    if before is not None and int(before) != total:
        changed = f" (the checkpoint's run was set to {before} steps, the config now gives {total}"
        if trainer.optim.schedule == "cosine":
            changed += f"; the cosine learning rate now decays over {total} steps"
        changed += ")"
    if start >= end:
        return f"{trainer.workdir}: checkpoint at step {start} ≥ {target}: nothing to do{changed}"
    if start == 0:
        return f"training {trainer.workdir} from step 0 to step {end} of {total}"
    new_end = "the new end, " if changed and own_end else ""
    return (
        f"resuming {trainer.workdir} from step {start}, continuing to {new_end}step {end} of "
        f"{total}{changed}"
    )


def _trainer(
    init_fn: Callable[[jax.Array], Any],
    loss_fn: trainer_lib.LossFn,
    batches: trainer_lib.BatchSource,
    optim: trainer_lib.OptimConfig,
    training: Mapping[str, Any],
    workdir: Path,
    show_progress: bool,
    config: Mapping[str, Any],
    skip_corrupt: bool = False,
) -> trainer_lib.Trainer:
    return trainer_lib.Trainer(
        init_fn=init_fn,
        loss_fn=loss_fn,
        batches=batches,
        optim=optim,
        workdir=workdir,
        seed=int(training["seed"]),
        checkpoint_every=int(training["checkpoint_every"]),
        keep=int(training["keep"]),
        log_every=int(training["log_every"]),
        show_progress=show_progress,
        config=config,
        skip_corrupt=skip_corrupt,
    )


def _field_batches(
    data: store.Dataset, names: list[str], training: Mapping[str, Any]
) -> pipeline.Batches:
    """Physical-unit training batches of `names` (the models normalise themselves)."""
    unit = {name: {"mean": 0.0, "std": 1.0} for name in names}
    return pipeline.Batches(
        pipeline.trajectory_fields(data, "train", names),
        names,
        batch_size=int(training["batch_size"]),
        seed=int(training["seed"]),
        stats=unit,
        sample_axes=2,
    )


class _LatentBatches:
    """Batches of the stage-2 latents ``{"z_target", "z_omega"} [batch, m, m]``.

    The training split is encoded with the frozen stage-1 encoders on the first `batch_at` call
    (not when the trainer is built: loading a trained stage-2 run needs no encoding). The number
    of batches per epoch is that of the field batches, the order that of
    `pipeline.Batches(seed)` over the same number of samples, so the latents of step k come from
    the snapshots stage 1 saw at step k (when both stages share a batch size).
    """

    def __init__(
        self,
        encode: Callable[[], dict[str, np.ndarray]],
        num_samples: int,
        training: Mapping[str, Any],
    ) -> None:
        self._encode = encode
        self._batch_size = int(training["batch_size"])
        self._seed = int(training["seed"])
        self._steps_per_epoch = num_samples // self._batch_size
        self._batches: pipeline.Batches | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch

    def batch_at(self, step: int) -> dict[str, jax.Array]:
        if self._batches is None:
            latents = self._encode()
            unit = {name: {"mean": 0.0, "std": 1.0} for name in latents}
            self._batches = pipeline.Batches(
                latents, list(latents), self._batch_size, self._seed, stats=unit
            )
        return self._batches.batch_at(step)


def _encode_training_set(
    model: latent_model.LatentDiffusionModel,
    ae_params: Any,
    data: store.Dataset,
    chunk: int = 256,
) -> dict[str, np.ndarray]:
    """``{"z_target", "z_omega"} [N, m, m]`` of the whole training split (the sample order of
    `_field_batches`: trajectories × snapshots flattened), encoded with `ae_params` in fixed
    chunks (deterministic)."""
    fields = {
        name: a.reshape(-1, *a.shape[2:])
        for name, a in pipeline.trajectory_fields(data, "train", latent_model.FIELDS).items()
    }
    total = len(fields["target"])
    encode = jax.jit(model.encode_latents)
    parts: dict[str, list[np.ndarray]] = {"z_target": [], "z_omega": []}
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        batch = {n: np.asarray(fields[n][start:stop], np.float32) for n in latent_model.FIELDS}
        for name, z in encode(ae_params, batch).items():
            parts[name].append(np.asarray(z))
    return {name: np.concatenate(v) for name, v in parts.items()}


def _latent_trainer(
    config: dict[str, Any],
    workdir: Path,
    data: store.Dataset,
    run_name: str | None,
    show_progress: bool,
    stage: str | None,
    skip_corrupt: bool = False,
) -> tuple[latent_model.LatentDiffusionModel, trainer_lib.Trainer, Any]:
    """(model, trainer, frozen stage-1 autoencoder params or None) of a latent-kind run
    (`skip_corrupt`: see `build_trainer`)."""
    model = latent_model.from_config(config, data.stats)
    mode = latent_model.training_mode(config)
    training = config["training"]
    n = data.specs["target"].shape[-1]
    model.latent_size(n)
    folder = run_dir(config, workdir, run_name, stage)
    names = list(latent_model.FIELDS)
    optim = optim_from_config(training)
    batches = _field_batches(data, names, training)
    if mode == "joint":
        trainer = _trainer(
            lambda key: model.init(key, n),
            model.loss,
            batches,
            optim,
            training,
            folder,
            show_progress,
            config,
            skip_corrupt,
        )
        _refuse_other_diffusion(trainer, config)
        return model, trainer, None
    stage1_epochs = config["latent"]["stage1_epochs"]
    if isinstance(stage1_epochs, bool) or not isinstance(stage1_epochs, int) or stage1_epochs < 1:
        raise ValueError(
            f"latent.stage1_epochs={stage1_epochs!r} is invalid: expected an integer >= 1"
        )
    stage1_steps = config["latent"].get("stage1_steps", 0)  # absent before it was a field
    if isinstance(stage1_steps, bool) or not isinstance(stage1_steps, int) or stage1_steps < 0:
        raise ValueError(
            f"latent.stage1_steps={stage1_steps!r} is invalid; allowed: 0 (use stage1_epochs) "
            "or an int ≥ 1"
        )
    stage1_optim = dataclasses.replace(
        optim,
        num_epochs=None if stage1_steps else int(stage1_epochs),
        num_steps=stage1_steps or None,
    )
    if stage == "autoencoders":
        trainer = _trainer(
            lambda key: model.init_autoencoders(key, n),
            model.reconstruction_loss,
            batches,
            stage1_optim,
            training,
            folder,
            show_progress,
            {**config, "stage": stage},
            skip_corrupt,
        )
        return model, trainer, None
    # stage 2: the frozen EMA autoencoders of the finished stage 1
    _, first, _ = _latent_trainer(config, workdir, data, run_name, False, "autoencoders")
    with first:
        if first.step < first.total_steps:
            raise ValueError(
                f"stage 1 of the two-stage latent baseline (autoencoders, {first.workdir}) is at "
                f"step {first.step} of {first.total_steps}: train it to the end first (run "
                "experiments/train.py with the same config)"
            )
        ae_params = jax.device_get(first.state.ema_params)
        stage1 = {"step": first.step, "digest": params_digest(ae_params), "run": str(first.workdir)}
    latents = _LatentBatches(
        lambda: _encode_training_set(model, ae_params, data), batches.num_samples, training
    )
    trainer = _trainer(
        lambda key: model.init_score(key, n),
        model.latent_loss,
        latents,
        optim,
        training,
        folder,
        show_progress,
        {**config, "stage": stage, "stage1": stage1},
        skip_corrupt,
    )
    latest = trainer.checkpoints.latest_step()
    if latest is not None:
        stored = trainer.checkpoints.metadata(latest).get("config", {}).get("stage1", {})
        if stored.get("digest") != stage1["digest"]:
            trainer.close()
            raise IncompatibleCheckpointError(
                f"stage-2 checkpoint {trainer.checkpoints.directory / str(latest)} was trained on "
                f"the latents of another stage-1 result (stage-1 digest {stored.get('digest')}, "
                f"step {stored.get('step')}; now {stage1['digest']}, step {stage1['step']}): "
                f"delete {folder} to retrain stage 2"
            )
    _refuse_other_diffusion(trainer, config)
    return model, trainer, ae_params


def build_trainer(
    config: Mapping[str, Any],
    workdir: str | Path,
    data_dir: str | Path | None = None,
    run_name: str | None = None,
    show_progress: bool = True,
    stage: str | None = None,
    skip_corrupt: bool = False,
) -> tuple[Model, trainer_lib.Trainer]:
    """The closure model of `config` and a Trainer on its run folder (`run_dir`), restored if a
    checkpoint is there (its architecture must match, and for a score network its `diffusion`
    section, else IncompatibleCheckpointError). A corrupt latest checkpoint raises
    `CorruptCheckpointError`, or with `skip_corrupt` (resuming training) the newest intact one
    is restored with a warning.

    `stage` ("autoencoders" | "score") selects the run of the two-stage latent baseline and must
    be None otherwise; the "score" stage needs stage 1 trained to its end.
    """
    config_dict = as_dict(config)
    workdir = Path(workdir).resolve()
    data = open_study_dataset(config_dict, data_dir or workdir / "dataset")
    if _is_latent(config_dict):
        model, trainer, _ = _latent_trainer(
            config_dict, workdir, data, run_name, show_progress, stage, skip_corrupt
        )
        return model, trainer
    folder = run_dir(config_dict, workdir, run_name, stage)
    model = kinds.from_config(config_dict, data.stats)
    training = config_dict["training"]
    names = [*model.condition_names, "target"]
    n = data.specs["target"].shape[-1]
    trainer = _trainer(
        lambda key: model.init(key, n),
        model.loss,
        _field_batches(data, names, training),
        optim_from_config(training),
        training,
        folder,
        show_progress,
        config_dict,
        skip_corrupt,
    )
    if kinds.get(model.kind).samples:  # the regression baseline has no SDE
        _refuse_other_diffusion(trainer, config_dict)
    return model, trainer


@dataclasses.dataclass(frozen=True)
class TwoStageState:
    """The states of the two-stage latent baseline's runs (`train`'s result for that mode).

    Attributes:
      autoencoders: stage 1's final `TrainState` (params ``{"target_ae", "omega_ae"}``).
      score: stage 2's final `TrainState` (the latent FNO's params), None if stage 2 has not run.
    """

    autoencoders: TrainState
    score: TrainState | None

    @property
    def step(self) -> int:
        """Updates applied over both stages."""
        return int(self.autoencoders.step) + (0 if self.score is None else int(self.score.step))

    def _assemble(self, ema_score: bool) -> dict[str, Any]:
        if self.score is None:
            raise ValueError("stage 2 (the latent score) has not been trained yet")
        score = self.score.ema_params if ema_score else self.score.params
        return {**self.autoencoders.ema_params, "score": score}

    @property
    def params(self) -> dict[str, Any]:
        """``{"target_ae", "omega_ae"}`` of stage 1's EMA (the frozen encoders stage 2 used) and
        stage 2's raw ``"score"``."""
        return self._assemble(ema_score=False)

    @property
    def ema_params(self) -> dict[str, Any]:
        """As `params` with stage 2's EMA ``"score"``."""
        return self._assemble(ema_score=True)


def train(
    config: Mapping[str, Any],
    workdir: str | Path,
    data_dir: str | Path | None = None,
    num_steps: int | None = None,
    run_name: str | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[Model, Any]:
    """Trains (or resumes) the closure model of `config`; returns (model, final state).

    The state is a `TrainState`, or a `TwoStageState` for the two-stage latent baseline, whose
    stages run in order; there `num_steps` counts the updates of both stages (stage 1's
    `T1` steps, then stage 2's: `num_steps = T1 + k` stops stage 2 at its step k).

    One process trains a run at a time: the run folder (for the two-stage baseline, the folder
    of both stages) is locked (`locking.hold`), and a second process is refused with
    `locking.FolderLockedError` naming the holder.
    """
    config_dict = as_dict(config)
    holder = run_folder(config_dict, workdir, run_name)
    with locking.hold(holder, "train"):
        say = log or (lambda _: None)
        config_dict = budget.planned(train, config_dict, workdir, holder, data_dir, log=say)
        return _train(config_dict, workdir, data_dir, num_steps, run_name, show_progress, log)


def run_folder(config: Mapping[str, Any], workdir: str | Path, run_name: str | None = None) -> Path:
    """The folder of a whole run: `run_dir`, and for the two-stage latent baseline the folder of
    both its stages (locked while it trains; it holds a budgeted run's `budget.PLAN_FILE`)."""
    return (
        run_dir(config, workdir, run_name, final_stage(config)).parent
        if is_two_stage(config)
        else run_dir(config, workdir, run_name)
    )


def _train(
    config_dict: dict[str, Any],
    workdir: str | Path,
    data_dir: str | Path | None,
    num_steps: int | None,
    run_name: str | None,
    show_progress: bool,
    log: Callable[[str], None] | None,
) -> tuple[Model, Any]:
    """`train` under the run folder's lock."""
    say = log or (lambda _: None)
    if not is_two_stage(config_dict):
        model, trainer = build_trainer(
            config_dict, workdir, data_dir, run_name, show_progress, skip_corrupt=True
        )
        with trainer:
            end = trainer.total_steps if num_steps is None else num_steps
            if _valid_end(end, trainer.total_steps):  # else `train` refuses it
                say(_plan(trainer, end, None if num_steps is None else f"num_steps {end}"))
            state = trainer.train(num_steps)
            state = jax.device_get(state)
        return model, state
    if num_steps is not None and (isinstance(num_steps, bool) or not isinstance(num_steps, int)):
        raise ValueError(f"num_steps must be None or an integer >= 0, got {num_steps!r}")
    if num_steps is not None and num_steps < 0:
        raise ValueError(f"num_steps must be None or an integer >= 0, got {num_steps!r}")
    model, first = build_trainer(
        config_dict,
        workdir,
        data_dir,
        run_name,
        show_progress,
        stage="autoencoders",
        skip_corrupt=True,
    )
    with first:
        total1 = first.total_steps
        end1 = total1 if num_steps is None else min(num_steps, total1)
        target1 = f"num_steps {num_steps}" if end1 != total1 else None
        say(f"stage 1/2 (autoencoders): {_plan(first, end1, target1)}")
        state1 = jax.device_get(first.train(end1))
    if int(state1.step) < total1:
        return model, TwoStageState(state1, None)
    model, second = build_trainer(
        config_dict, workdir, data_dir, run_name, show_progress, stage="score", skip_corrupt=True
    )
    with second:
        total2 = second.total_steps
        # num_steps < total1 with stage 1 already past it: stage 2 has nothing to do either
        end2 = total2 if num_steps is None else max(num_steps - total1, 0)
        if end2 > total2:
            raise ValueError(
                f"num_steps={num_steps} exceeds the two-stage total {total1} + {total2} = "
                f"{total1 + total2} (stage 1 + stage 2 steps)"
            )
        target2 = None
        if num_steps is not None:
            target2 = f"step {end2} (num_steps {num_steps} less stage 1's {total1} steps)"
        say(f"stage 2/2 (latent score): {_plan(second, end2, target2)}")
        state2 = jax.device_get(second.train(end2))
    return model, TwoStageState(state1, state2)


def load(
    config: Mapping[str, Any],
    workdir: str | Path,
    data_dir: str | Path | None = None,
    run_name: str | None = None,
    use_ema: bool = True,
) -> tuple[Model, Any]:
    """(model, parameters) of the latest checkpoint of a trained run; clear error if none.

    For the latent kind the parameters are ``{"target_ae", "omega_ae", "score"}``; for the
    two-stage baseline the autoencoders are stage 1's EMA parameters (those stage 2 was trained
    on) whatever `use_ema`, which selects stage 2's.
    """
    config_dict = as_dict(config)
    workdir = Path(workdir).resolve()
    two_stage = is_two_stage(config_dict)
    # the first run trained (two-stage: stage 1; a stage 2 not yet begun is named further down)
    folder = run_dir(config_dict, workdir, run_name, LATENT_STAGES[0] if two_stage else None)
    if not (folder / "checkpoints").is_dir():  # refused before anything creates the folder
        raise FileNotFoundError(
            f"no checkpoint of a trained '{run_name or config_dict['model']['kind']}' model "
            f"in {folder}; run experiments/train.py first"
        )
    # a budgeted run's length as planned when it trained (the optimiser's schedule)
    config_dict = budget.planned(
        train, config_dict, workdir, run_folder(config_dict, workdir, run_name), measure=False
    )
    ae_params = None
    if _is_latent(config_dict):
        data = open_study_dataset(config_dict, data_dir or workdir / "dataset")
        model, trainer, ae_params = _latent_trainer(
            config_dict, workdir, data, run_name, False, final_stage(config_dict)
        )
    else:
        model, trainer = build_trainer(config_dict, workdir, data_dir, run_name, False)
    with trainer:
        if trainer.step == 0:
            raise FileNotFoundError(
                f"no checkpoint of a trained '{run_name or config_dict['model']['kind']}' model "
                f"in {trainer.workdir}; run experiments/train.py first"
            )
        state = jax.device_get(trainer.state)
    params = state.ema_params if use_ema else state.params
    if ae_params is not None:  # two-stage: stage 1's frozen EMA autoencoders + stage 2's score
        params = {**ae_params, "score": params}
    return model, params
