"""Checkpoints of a `TrainState`: orbax, periodic, keep-N, atomic, with the run's metadata.

Layout: ``<directory>/<step>/state`` (the `TrainState`, orbax's standard pytree format) and
``<directory>/<step>/metadata`` (JSON: whatever the caller passes, typically the config that made
the run, plus a ``"signature"`` of the state's array paths, shapes and dtypes written here).

Atomicity: orbax writes a step into ``<step>.orbax-checkpoint-tmp-<time>`` and renames it to
``<step>`` only when every item is complete, and lists only renamed steps, so a process killed
during a save leaves the previous step as the latest (the unfinished temporary folder is removed
the next time a manager opens the directory).

Compatibility: before restoring, the signature stored with the checkpoint is compared with the
target state's; a different architecture (parameter tree or shapes) or optimiser raises
`IncompatibleCheckpointError` naming the first mismatching path and both shapes, instead of a
deep orbax error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from closurejax.training.state import TrainState

__all__ = ["CheckpointManager", "IncompatibleCheckpointError", "tree_signature"]

_STATE = "state"
_METADATA = "metadata"


class IncompatibleCheckpointError(ValueError):
    """A checkpoint's state does not fit the target state (other architecture or optimiser)."""


def tree_signature(tree: Any) -> dict[str, dict[str, Any]]:
    """Path -> ``{"shape": [...], "dtype": "..."}`` of every array leaf, in tree order.

    Paths join the keys with ``/`` (e.g. ``"params/Dense_0/kernel"``, ``"opt_state/0/mu/..."``).
    Works on arrays and on abstract leaves (`jax.ShapeDtypeStruct`).
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = {}
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        dtype = leaf.dtype
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            dtype = np.dtype(np.uint32)  # not stored by TrainState, which keeps raw key data
        out[name] = {"shape": [int(d) for d in np.shape(leaf)], "dtype": str(np.dtype(dtype))}
    return out


def _first_mismatch(
    stored: Mapping[str, Mapping[str, Any]], target: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Describes the first path whose shape/dtype differs or that only one side has."""
    for name, spec in target.items():
        if name not in stored:
            return (
                f"{name!r} (shape {tuple(spec['shape'])}, {spec['dtype']}) is in the target "
                "state but not in the checkpoint"
            )
        old = stored[name]
        if list(old["shape"]) != list(spec["shape"]) or old["dtype"] != spec["dtype"]:
            return (
                f"{name!r} has shape {tuple(old['shape'])} ({old['dtype']}) in the checkpoint "
                f"but shape {tuple(spec['shape'])} ({spec['dtype']}) in the target state"
            )
    for name, old in stored.items():
        if name not in target:
            return (
                f"{name!r} (shape {tuple(old['shape'])}, {old['dtype']}) is in the checkpoint "
                "but not in the target state"
            )
    return None


def _jsonable(obj: Any) -> Any:
    """`obj` as plain JSON types (tuples become lists; unknown objects their `str`)."""
    return json.loads(json.dumps(obj, default=str))


def _abstract(tree: Any) -> Any:
    """Shape/dtype/sharding of every leaf (arrays or `jax.ShapeDtypeStruct` s)."""

    def leaf(x: Any) -> jax.ShapeDtypeStruct:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, "sharding", None))

    return jax.tree.map(leaf, tree)


class CheckpointManager:
    """Saves and restores `TrainState` checkpoints in one directory, keeping the newest `keep`.

    Args:
      directory: the checkpoint folder (created if missing); relative paths are resolved
        against the current directory (orbax needs absolute paths).
      keep: how many of the newest checkpoints to keep (older ones are deleted after a save).
      async_save: write in a background thread (the device-to-host copy is done before `save`
        returns, so the saved arrays may be donated or changed right away); `wait` blocks until
        pending writes are finished.
    """

    def __init__(
        self, directory: str | os.PathLike, *, keep: int = 3, async_save: bool = True
    ) -> None:
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self._directory = Path(directory).expanduser().resolve()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(
            self._directory, options=options, item_names=(_STATE, _METADATA)
        )

    @property
    def directory(self) -> Path:
        """The absolute checkpoint folder."""
        return self._directory

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None if there is none."""
        return self._manager.latest_step()

    def save(self, state: TrainState, metadata: Mapping[str, Any] | None = None) -> int:
        """Saves `state` at step ``int(state.step)`` with `metadata` (JSON-able) and its signature.

        Returns the step saved. Deletes the oldest checkpoints beyond `keep` once this one is
        complete. Raises `ValueError` if that step is already saved.
        """
        step = int(state.step)
        if step in self._manager.all_steps():
            raise ValueError(f"a checkpoint of step {step} already exists in {self._directory}")
        meta = _jsonable(dict(metadata or {}))
        meta["step"] = step
        meta["signature"] = tree_signature(state)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                **{_STATE: ocp.args.StandardSave(state), _METADATA: ocp.args.JsonSave(meta)}
            ),
            force=True,
        )
        return step

    def metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of checkpoint `step` (default: the latest)."""
        step = self._resolve(step)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()})
        )
        return dict(restored[_METADATA])

    def restore(self, step: int, target_state: TrainState) -> TrainState:
        """Restores checkpoint `step` into the structure, dtypes and shardings of `target_state`.

        `target_state` may hold arrays or `jax.ShapeDtypeStruct` s (e.g. from `jax.eval_shape`
        with shardings attached); the restored arrays take their shardings.

        Raises:
          IncompatibleCheckpointError: the checkpoint's arrays differ from the target's in
            paths, shapes or dtypes (the message names the first mismatch, parameters first).
        """
        step = self._resolve(step)
        self.check_compatible(step, target_state)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(_abstract(target_state))}),
        )
        return restored[_STATE]

    def restore_latest(self, target_state: TrainState) -> TrainState | None:
        """`restore` of the latest checkpoint, or None when the directory holds none."""
        step = self.latest_step()
        return None if step is None else self.restore(step, target_state)

    def check_compatible(self, step: int, target_state: TrainState) -> None:
        """Raises `IncompatibleCheckpointError` unless checkpoint `step` fits `target_state`."""
        stored = self.metadata(step).get("signature")
        if stored is None:
            raise IncompatibleCheckpointError(
                f"checkpoint {self._directory / str(step)} has no state signature in its "
                "metadata; it was not written by closurejax.training.checkpoint"
            )
        target = tree_signature(target_state)
        for prefix, what in (("params/", "architecture"), ("", "train state")):
            mismatch = _first_mismatch(
                {k: v for k, v in stored.items() if k.startswith(prefix)},
                {k: v for k, v in target.items() if k.startswith(prefix)},
            )
            if mismatch is not None:
                raise IncompatibleCheckpointError(
                    f"checkpoint {self._directory / str(step)} does not fit this {what}: {mismatch}"
                )

    def wait(self) -> None:
        """Blocks until every pending (asynchronous) save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager's resources."""
        self._manager.close()

    def _resolve(self, step: int | None) -> int:
        steps = self._manager.all_steps()
        if step is None:
            step = self._manager.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint in {self._directory}")
        elif step not in steps:
            raise FileNotFoundError(
                f"no checkpoint of step {step} in {self._directory}; steps: {sorted(steps)}"
            )
        return int(step)
