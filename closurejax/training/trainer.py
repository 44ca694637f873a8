"""A generic, data-parallel, exactly resumable trainer.

The trainer knows nothing about the model: it is given ``init_fn(key) -> params``,
``loss_fn(params, batch, key) -> (loss, aux)`` and a batch source whose ``batch_at(step)`` is a
function of the global step alone (`closurejax.data.pipeline.Batches`). One update is one
jit-compiled function (value_and_grad, optax update, EMA update, metrics); the batch is split
over the ``"data"`` axis of a device mesh and the state replicated, so sharding-aware jit reduces
the gradients across devices (no pmap). Step k uses ``batch_at(k)`` and the key
``fold_in(base key, k)``, so a run killed and resumed from a checkpoint ends bit-identical to an
uninterrupted one.

Files in ``workdir``: ``checkpoints/`` (see `closurejax.training.checkpoint`) and
``metrics.jsonl``, one JSON object per logged step: ``step`` (updates applied, 1-based), ``epoch``
(step / steps_per_epoch), ``loss``, ``lr`` (the learning rate of that update), ``grad_norm``
(global norm before clipping), ``samples_per_s`` (over the steps since the previous line; the first
line includes compilation) and the loss function's aux scalars — the values of that one step, not
averages. Lines are appended and flushed as they are written; on (re)start the lines of steps after
the restored step, and torn lines, are dropped (an atomic rewrite), so the log has no duplicates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from closurejax import interrupts, parallel
from closurejax.atomic import write_bytes
from closurejax.training.checkpoint import CheckpointManager
from closurejax.training.state import TrainState

__all__ = [
    "SCHEDULES",
    "BatchSource",
    "NonFiniteLossError",
    "OptimConfig",
    "RESERVED_METRICS",
    "Trainer",
    "make_optimizer",
    "make_schedule",
    "read_metrics",
]

SCHEDULES = ("step", "cosine", "constant")

LossFn = Callable[[Any, dict[str, jax.Array], jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]
RESERVED_METRICS = ("step", "epoch", "loss", "lr", "grad_norm", "samples_per_s", "ok")


class BatchSource(Protocol):
    """What the trainer needs of a data pipeline (`closurejax.data.pipeline.Batches` has it)."""

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch."""
        ...

    def batch_at(self, step: int) -> dict[str, jax.Array]:
        """Batch of global step `step` (a function of `step` alone): name -> ``[batch, ...]``."""
        ...


class NonFiniteLossError(FloatingPointError):
    """A training step produced a non-finite loss or gradient; the state was not updated.

    Attributes:
      step: the failing step (its batch is ``batch_at(step)``; the state stays at this step).
      loss: the loss value of that step.
      grad_norm: the global gradient norm of that step.
    """

    def __init__(self, step: int, loss: float, grad_norm: float, detail: str = "") -> None:
        self.step, self.loss, self.grad_norm = step, loss, grad_norm
        super().__init__(
            f"non-finite training step {step}: loss={loss}, grad_norm={grad_norm} "
            f"(batch_at({step}), key fold_in(base, {step})); the update was discarded, the "
            f"state kept at step {step} and nothing saved{detail}"
        )


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"optim.{name}={value!r} is invalid: expected {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimisation settings (the ``optim`` section of a study config).

    Attributes:
      learning_rate: peak learning rate (arXiv 2408.02965: Adam, 1e-3).
      schedule: ``"step"`` — the papers' step decay, ×`decay_factor` every
        `decay_every_epochs` epochs (counted in steps via the batch source's steps_per_epoch);
        ``"cosine"`` — cosine decay to 0 over the steps after warm-up; ``"constant"``.
      decay_factor: step-decay factor in (0, 1] (papers: 0.5).
      decay_every_epochs: step-decay period in epochs (papers: 200).
      warmup_steps: linear warm-up, learning rate ``learning_rate * (k + 1) / warmup_steps`` at
        step k < warmup_steps; the step schedule keeps counting epochs from step 0, the cosine
        schedule decays over ``[warmup_steps, total steps]``.
      grad_clip_norm: clip gradients to this global norm before Adam; None = no clipping.
      ema_decay: EMA of the parameters, ``ema <- d_k * ema + (1 - d_k) * params`` after update k,
        with the usual warm-up ``d_k = min(ema_decay, (1 + k) / (10 + k))``,
        in [0, 1); 0 = off (the EMA equals the parameters).
      weight_decay: 0 = Adam; > 0 = AdamW (decoupled decay, scaled by the learning rate).
      b1, b2, eps: Adam's moment decays and denominator offset.
      num_epochs: length of the run in epochs (papers: 1000) — or
      num_steps: length of the run in steps. Exactly one of the two must be set (the other
        None); the trainer refuses a config with neither.
    """

    learning_rate: float = 1e-3
    schedule: str = "step"
    decay_factor: float = 0.5
    decay_every_epochs: int = 200
    warmup_steps: int = 0
    grad_clip_norm: float | None = None
    ema_decay: float = 0.999
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    num_epochs: int | None = None
    num_steps: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise _bad("learning_rate", self.learning_rate, "a finite number > 0")
        if self.schedule not in SCHEDULES:
            raise _bad("schedule", self.schedule, f"one of {SCHEDULES}")
        if not 0 < self.decay_factor <= 1:
            raise _bad("decay_factor", self.decay_factor, "a number in (0, 1]")
        if not _is_int(self.decay_every_epochs) or self.decay_every_epochs < 1:
            raise _bad("decay_every_epochs", self.decay_every_epochs, "an integer >= 1")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise _bad("warmup_steps", self.warmup_steps, "an integer >= 0")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise _bad("grad_clip_norm", self.grad_clip_norm, "None or a number > 0")
        if not 0 <= self.ema_decay < 1:
            raise _bad("ema_decay", self.ema_decay, "a number in [0, 1) (0 = off)")
        if not self.weight_decay >= 0:
            raise _bad("weight_decay", self.weight_decay, "a number >= 0")
        for name in ("b1", "b2"):
            if not 0 <= getattr(self, name) < 1:
                raise _bad(name, getattr(self, name), "a number in [0, 1)")
        if not self.eps > 0:
            raise _bad("eps", self.eps, "a number > 0")
        for name in ("num_epochs", "num_steps"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise _bad(name, value, "None or an integer >= 1")
        if self.num_epochs is not None and self.num_steps is not None:
            raise ValueError(
                f"optim.num_epochs={self.num_epochs} and optim.num_steps={self.num_steps} are "
                "both set: set exactly one (the other None)"
            )

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's length in steps: `num_steps`, or ``num_epochs * steps_per_epoch``."""
        if self.num_steps is not None:
            return int(self.num_steps)
        if self.num_epochs is None:
            raise ValueError("optim: set one of num_epochs, num_steps (both are None)")
        return int(self.num_epochs) * int(steps_per_epoch)


def make_schedule(optim: OptimConfig, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate as a function of the step (see `OptimConfig`)."""
    if not _is_int(steps_per_epoch) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be an integer >= 1, got {steps_per_epoch!r}")
    lr, warmup = optim.learning_rate, optim.warmup_steps
    if optim.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif optim.schedule == "step":
        main = optax.exponential_decay(
            lr,
            transition_steps=optim.decay_every_epochs * steps_per_epoch,
            decay_rate=optim.decay_factor,
            staircase=True,
        )
    else:
        cosine = optax.cosine_decay_schedule(
            lr, decay_steps=max(optim.total_steps(steps_per_epoch) - warmup, 1)
        )

        def main(step: jax.Array) -> jax.Array:
            return cosine(jnp.maximum(step - warmup, 0))

    if warmup == 0:
        return main

    def schedule(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step)
        ramp = lr * (step + 1).astype(jnp.float32) / warmup
        return jnp.where(step < warmup, ramp, main(step))

    return schedule


def make_optimizer(
    optim: OptimConfig, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam (AdamW if weight_decay > 0) on `make_schedule`, after optional global-norm clipping.

    Returns the transformation and its schedule.
    """
    schedule = make_schedule(optim, steps_per_epoch)
    if optim.weight_decay > 0:
        adam = optax.adamw(
            schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay
        )
    else:
        adam = optax.adam(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps)
    if optim.grad_clip_norm is None:
        return adam, schedule
    return optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), adam), schedule


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, skipping blank or unreadable (torn) lines."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    ema_decay: float,
) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """The un-jitted update ``(state, batch) -> (state, metrics)``.

    A non-finite loss or gradient norm returns the input state unchanged (and ``ok = False`` in
    the metrics), so the caller can stop with the last good state even when buffers are donated.
    """

    def train_step(
        state: TrainState, batch: dict[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        key = state.key_at(state.step)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
        if jnp.shape(loss) != ():
            raise ValueError(f"loss_fn must return a scalar loss, got shape {jnp.shape(loss)}")
        if not isinstance(aux, Mapping):
            raise TypeError(f"loss_fn's aux must be a dict of scalars, got {type(aux).__name__}")
        for name, value in aux.items():
            if name in RESERVED_METRICS:
                raise ValueError(f"loss_fn's aux key {name!r} clashes with a trainer metric")
            if jnp.shape(value) != ():
                raise ValueError(
                    f"loss_fn's aux[{name!r}] must be a scalar, got {jnp.shape(value)}"
                )
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if ema_decay > 0:
            # warm-up: d_k = min(d, (1 + k)/(10 + k)) at update k, so the initial parameters do
            # not linger in the average (with a fixed d = 0.999 they would still weigh 22 %
            # after 1500 updates)
            k = state.step.astype(jnp.float32)
            decay = jnp.minimum(ema_decay, (1.0 + k) / (10.0 + k))
            ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
        else:
            ema = params
        new = state.replace(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
        metrics = {
            "loss": loss,
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
            "grad_norm": grad_norm,
            "ok": ok,
            **aux,
        }
        return new, metrics

    return train_step


class Trainer:
    """Trains `init_fn`'s parameters on `loss_fn` over `batches`, resuming from `workdir`.

    Args:
      init_fn: ``key -> params``.
      loss_fn: ``(params, batch, key) -> (loss, aux)``; loss a scalar, aux a dict of scalars
        (logged beside the trainer's metrics; names must not be one of `RESERVED_METRICS`). A
        batch-mean loss over a sharded batch is reduced across devices by jit.
      batches: the batch source (`BatchSource`); ``batch_at(k)`` must depend on k alone, and
        every batch's size must be a multiple of the number of devices.
      optim: the optimisation config.
      workdir: run folder: ``checkpoints/`` and ``metrics.jsonl``. If it holds a checkpoint, the
        trainer resumes from the latest one (verified against its checksum).
      seed: seed of the run's key (parameter initialisation and per-step keys).
      checkpoint_every: save every this many steps (and always at the end of `train`).
      keep: how many checkpoints to keep.
      log_every: write a metrics line every this many steps (and at the end of `train`).
      mesh: device mesh with a ``"data"`` axis; default `parallel.data_mesh()` (all devices).
      show_progress: show a tqdm progress bar (process 0 only).
      config: the configuration that made the run (JSON-able, e.g. ``config.to_dict()``),
        stored with every checkpoint beside `optim`, the seed and the state signature.
      async_checkpoints: write checkpoints in a background thread.
      skip_corrupt: when the latest checkpoint is corrupt (`CorruptCheckpointError`: unreadable
        or differing from its checksum), resume from the newest intact one with a
        `CheckpointWarning` (the corrupt ones are moved aside, see
        `CheckpointManager.restore_latest`) instead of raising; for resuming training, not for
        loading a trained model.

    Attributes:
      state: the current `TrainState` (restored, fresh, or after `train`). The train step donates
        its input state's buffers, so a state held from before a `train` call is invalidated:
        keep a host copy (``jax.device_get(trainer.state)``) if you need one.
    """

    def __init__(
        self,
        init_fn: Callable[[jax.Array], Any],
        loss_fn: LossFn,
        batches: BatchSource,
        optim: OptimConfig,
        workdir: str | os.PathLike,
        *,
        seed: int = 0,
        checkpoint_every: int = 1000,
        keep: int = 3,
        log_every: int = 50,
        mesh: Mesh | None = None,
        show_progress: bool = True,
        config: Mapping[str, Any] | None = None,
        async_checkpoints: bool = True,
        skip_corrupt: bool = False,
    ) -> None:
        if not isinstance(optim, OptimConfig):
            raise TypeError(f"optim must be an OptimConfig, got {type(optim).__name__}")
        for name, value in (("checkpoint_every", checkpoint_every), ("log_every", log_every)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self._loss_fn = loss_fn
        self._batches = batches
        self._optim = optim
        self._steps_per_epoch = int(batches.steps_per_epoch)
        self._total_steps = optim.total_steps(self._steps_per_epoch)
        self._workdir = Path(workdir).expanduser().resolve()
        self._seed = int(seed)
        self._checkpoint_every = int(checkpoint_every)
        self._log_every = int(log_every)
        self._show_progress = show_progress
        if config is not None and hasattr(config, "to_dict"):  # ml_collections.ConfigDict
            config = config.to_dict()
        self._config = dict(config) if config is not None else {}
        self._mesh = parallel.data_mesh() if mesh is None else mesh
        self._replicated = parallel.replicated_sharding(self._mesh)

        self._optimizer, self._schedule = make_optimizer(optim, self._steps_per_epoch)
        self._checkpoints = CheckpointManager(
            self._workdir / "checkpoints", keep=keep, async_save=async_checkpoints
        )

        def create(key: jax.Array) -> TrainState:
            return TrainState.create(init_fn, self._optimizer, key)

        key = jax.random.key(self._seed)
        abstract = jax.eval_shape(create, key)
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self._replicated), abstract
        )
        restored = self._checkpoints.restore_latest(abstract, skip_corrupt=skip_corrupt)
        if restored is None:
            restored = jax.jit(create, out_shardings=self._replicated)(key)
        self._state: TrainState = restored
        self._train_step = jax.jit(
            _make_train_step(loss_fn, self._optimizer, self._schedule, optim.ema_decay),
            donate_argnums=0,
            out_shardings=self._replicated,
        )

    @property
    def state(self) -> TrainState:
        """The current train state."""
        return self._state

    @property
    def step(self) -> int:
        """The current state's step (updates applied)."""
        return int(self._state.step)

    @property
    def total_steps(self) -> int:
        """Length of the run in steps (from the optim config)."""
        return self._total_steps

    @property
    def optim(self) -> OptimConfig:
        """The optimisation config."""
        return self._optim

    @property
    def workdir(self) -> Path:
        """The absolute run folder."""
        return self._workdir

    @property
    def metrics_path(self) -> Path:
        """``<workdir>/metrics.jsonl``."""
        return self._workdir / "metrics.jsonl"

    @property
    def checkpoints(self) -> CheckpointManager:
        """The run's checkpoint manager (``<workdir>/checkpoints``)."""
        return self._checkpoints

    @property
    def mesh(self) -> Mesh:
        """The device mesh the batch is sharded over."""
        return self._mesh

    @property
    def schedule(self) -> optax.Schedule:
        """The learning-rate schedule (step -> learning rate)."""
        return self._schedule

    def metadata(self) -> dict[str, Any]:
        """What every checkpoint records about the run (besides the state signature)."""
        return {
            "config": self._config,
            "optim": dataclasses.asdict(self._optim),
            "seed": self._seed,
            "steps_per_epoch": self._steps_per_epoch,
            "total_steps": self._total_steps,
            "num_devices": int(self._mesh.size),
            "jax_version": jax.__version__,
        }

    def _save(self) -> None:
        step = self.step
        if step not in self._checkpoints.all_steps():
            self._checkpoints.save(self._state, self.metadata())

    def _truncate_metrics(self, step: int) -> None:
        """Drops metrics lines of steps after `step` (and torn lines), rewriting atomically."""
        path = self.metrics_path
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and int(record.get("step", step + 1)) <= step:
                kept.append(line)
        if kept != lines:
            write_bytes(path, "".join(f"{line}\n" for line in kept).encode())

    def train(self, num_steps: int | None = None) -> TrainState:
        """Trains from the current step until step `num_steps` (default: the configured total).

        `num_steps` is a global step count, not a number of further steps; it must not exceed
        `total_steps`. Saves a checkpoint every `checkpoint_every` steps and at the end, and
        appends a metrics line every `log_every` steps and at the end.

        Returns:
          The final state (also `state`).

        Raises:
          NonFiniteLossError: a step gave a non-finite loss or gradient. The state stays the last
            good one (not saved: the latest checkpoint is the last periodic one).
          KeyboardInterrupt: Ctrl-C; its message says the step reached and the latest checkpoint.
        """
        end = self._total_steps if num_steps is None else num_steps
        if not _is_int(end) or not 0 <= end <= self._total_steps:
            raise ValueError(
                f"num_steps must be None or an integer in [0, {self._total_steps}] (the total "
                f"steps of optim), got {num_steps!r}"
            )
        start = self.step
        primary = jax.process_index() == 0
        if primary:
            self._truncate_metrics(start)
        if start >= end:
            return self._state

        log: IO[str] | None = None
        done = start  # the last step completed (a python int: read safely when interrupted)
        bar = tqdm(
            total=end,
            initial=start,
            unit="step",
            dynamic_ncols=True,
            disable=not (self._show_progress and primary),
        )
        with interrupts.catching():  # a Ctrl-C Python swallowed still stops the loop
            try:
                if primary:
                    self._workdir.mkdir(parents=True, exist_ok=True)
                    log = open(self.metrics_path, "a")  # closed in `finally`
                last_time, last_step = time.perf_counter(), start
                batch = parallel.shard_batch(self._batches.batch_at(start), self._mesh)
                for step in range(start, end):
                    interrupts.check()
                    batch_size = int(jax.tree.leaves(batch)[0].shape[0])
                    self._state, metrics = self._train_step(self._state, batch)
                    done = step + 1
                    if step + 1 < end:  # prepare the next batch while the device computes
                        batch = parallel.shard_batch(self._batches.batch_at(step + 1), self._mesh)
                    if not bool(metrics["ok"]):
                        values = jax.device_get(metrics)
                        latest = self._checkpoints.latest_step()
                        where = f" in {self._checkpoints.directory}" if latest is not None else ""
                        raise NonFiniteLossError(
                            step,
                            float(values["loss"]),
                            float(values["grad_norm"]),
                            f"; latest checkpoint: step {latest}{where}",
                        )
                    bar.update(1)
                    if done % self._log_every == 0 or done == end:
                        now = time.perf_counter()
                        values = jax.device_get(metrics)
                        record = {
                            "step": done,
                            "epoch": done / self._steps_per_epoch,
                            "samples_per_s": (done - last_step) * batch_size / (now - last_time),
                        }
                        for name, value in values.items():
                            if name != "ok":
                                record[name] = float(value)
                        last_time, last_step = now, done
                        bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.3g}")
                        if log is not None:
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                    if done % self._checkpoint_every == 0 or done == end:
                        self._save()
                interrupts.check()
            except KeyboardInterrupt:
                # not self.step: an interrupt inside the jitted step leaves self._state holding the
                # buffers the step donated (deleted arrays)
                raise KeyboardInterrupt(self._stopped(done, end)) from None
            finally:
                bar.close()
                if log is not None:
                    log.close()
                self._checkpoints.wait()
        return self._state

    def _stopped(self, reached: int, end: int) -> str:
        """Where an interrupted `train` stopped: the step reached and the latest checkpoint (a
        pending write finished first), where a resumed run starts again."""
        self._checkpoints.wait()
        latest = self._checkpoints.latest_step()
        kept = (
            f"latest checkpoint: step {latest} in {self._checkpoints.directory}"
            if latest is not None
            else "no checkpoint yet (a resumed run starts at step 0)"
        )
        return f"training {self._workdir} stopped at step {reached} of {end}; {kept}"

    def close(self) -> None:
        """Finishes pending checkpoint writes and releases the checkpoint manager."""
        self._checkpoints.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
