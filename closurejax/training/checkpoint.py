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

Integrity: the metadata of every step also records ``"state_sha256"``, the `tree_digest` of the
saved state (every array's path, shape, dtype and bytes, in tree order), written in the same
atomic step as the arrays. `restore` recomputes it from the restored arrays and raises
`CorruptCheckpointError` (one line naming the step folder) on a mismatch (flipped bytes load
without error otherwise) and on files orbax cannot read (a truncated file, unreadable metadata).
Checkpoints written before checksums were kept load unverified, with one `CheckpointWarning`.
`restore_latest(..., skip_corrupt=True)` (resuming a training run) instead falls back to the
newest intact step, moves the corrupt newer ones to ``<directory>_corrupt/<step>`` (out of the
run, kept for inspection; their steps are saved afresh) and warns once, naming them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from closurejax.training.state import TrainState

__all__ = [
    "CheckpointManager",
    "CheckpointWarning",
    "CorruptCheckpointError",
    "IncompatibleCheckpointError",
    "tree_digest",
    "tree_signature",
]

_STATE = "state"
_METADATA = "metadata"
_CHECKSUM = "state_sha256"
_CORRUPT_SUFFIX = "_corrupt"


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Holds a Ctrl-C (SIGINT) until the block ends, then delivers it to the previous handler.

    A save, or a wait on one, is never cut in half: interrupted inside, orbax logs its own
    traceback and leaves the step unfinished, whereas deferred the checkpoint completes and the
    interrupt names it. Only the main thread can set signal handlers; elsewhere the block runs
    as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if previous is signal.default_int_handler:
                raise KeyboardInterrupt
            if callable(previous):
                previous(signal.SIGINT, None)


class IncompatibleCheckpointError(ValueError):
    """A checkpoint's state does not fit the target state (other architecture or optimiser)."""


class CorruptCheckpointError(ValueError):
    """A checkpoint's files cannot be read, or its arrays differ from the checksum saved with
    them."""


class CheckpointWarning(UserWarning):
    """A checkpoint loaded without an integrity check, or corrupt checkpoints skipped on resume."""


def _host(leaf: Any) -> np.ndarray:
    """A leaf as a host array (a replicated array spanning processes: this process's copy)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        leaf = leaf.addressable_data(0)
    return np.ascontiguousarray(np.asarray(leaf))


def tree_digest(tree: Any) -> str:
    """Hex SHA-256 of every array leaf's path, shape, dtype and bytes, in tree order (leaves are
    copied to the host; replicated multi-process arrays contribute this process's copy)."""
    digest = hashlib.sha256()
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in leaves:
        array = _host(leaf)
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        digest.update(f"{name}:{array.shape}:{array.dtype};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _brief(error: BaseException, limit: int = 120) -> str:
    """The first line of `error`'s message, at most `limit` characters (tensorstore's errors
    run over many lines)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
        """Saves `state` at step ``int(state.step)`` with `metadata` (JSON-able), its signature
        and its checksum (`tree_digest`).

        Returns the step saved. Deletes the oldest checkpoints beyond `keep` once this one is
        complete. Raises `ValueError` if that step is already saved.
        """
        step = int(state.step)
        if step in self._manager.all_steps():
            raise ValueError(f"a checkpoint of step {step} already exists in {self._directory}")
        meta = _jsonable(dict(metadata or {}))
        meta["step"] = step
        meta["signature"] = tree_signature(state)
        meta[_CHECKSUM] = tree_digest(state)
        with _interrupts_deferred():
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    **{_STATE: ocp.args.StandardSave(state), _METADATA: ocp.args.JsonSave(meta)}
                ),
                force=True,
            )
        return step

    def metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of checkpoint `step` (default: the latest).

        Raises `CorruptCheckpointError` if it cannot be read or is not a JSON object.
        """
        step = self._resolve(step)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()})
            )
            meta = restored[_METADATA]
        except Exception as error:  # orbax/tensorstore raise many types; all mean unreadable
            raise CorruptCheckpointError(
                f"checkpoint {self._directory / str(step)} is corrupt: its metadata cannot be "
                f"read ({_brief(error)})"
            ) from error
        if not isinstance(meta, Mapping):
            raise CorruptCheckpointError(
                f"checkpoint {self._directory / str(step)} is corrupt: its metadata is a "
                f"{type(meta).__name__}, not a JSON object"
            )
        return dict(meta)

    def restore(self, step: int, target_state: TrainState) -> TrainState:
        """Restores checkpoint `step` into the structure, dtypes and shardings of `target_state`
        and verifies it against the checksum saved with it.

        `target_state` may hold arrays or `jax.ShapeDtypeStruct` s (e.g. from `jax.eval_shape`
        with shardings attached); the restored arrays take their shardings. A checkpoint without
        a checksum (written before they were kept) loads unverified, with a `CheckpointWarning`.

        Raises:
          IncompatibleCheckpointError: the checkpoint's arrays differ from the target's in
            paths, shapes or dtypes (the message names the first mismatch, parameters first).
          CorruptCheckpointError: its files cannot be read (e.g. truncated), or the restored
            arrays differ from its checksum (e.g. flipped bytes); one line naming the step folder.
        """
        step = self._resolve(step)
        where = self._directory / str(step)
        meta = self.metadata(step)
        self._check_signature(meta, step, target_state)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    **{_STATE: ocp.args.StandardRestore(_abstract(target_state))}
                ),
            )
            state = restored[_STATE]
        except Exception as error:  # tensorstore errors on truncated or garbled files
            raise CorruptCheckpointError(
                f"checkpoint {where} is corrupt: its arrays cannot be read ({_brief(error)})"
            ) from error
        expected = meta.get(_CHECKSUM)
        if expected is None:
            warnings.warn(
                f"checkpoint {where} has no checksum (written before closurejax kept them): "
                "loaded without an integrity check",
                CheckpointWarning,
                stacklevel=2,
            )
        elif tree_digest(state) != expected:
            raise CorruptCheckpointError(
                f"checkpoint {where} is corrupt: its arrays differ from the checksum saved with "
                "them (damaged files)"
            )
        return state

    def restore_latest(
        self, target_state: TrainState, skip_corrupt: bool = False
    ) -> TrainState | None:
        """`restore` of the latest checkpoint, or None when the directory holds none.

        With `skip_corrupt` (resuming training), a corrupt latest checkpoint does not raise:
        the newest intact one is restored instead (None if none is intact), the corrupt newer
        ones are moved to ``<directory>_corrupt/<step>`` so that their steps can be saved again,
        and one `CheckpointWarning` names them.
        """
        steps = self.all_steps()
        if not steps:
            return None
        if not skip_corrupt:
            return self.restore(steps[-1], target_state)
        skipped: list[tuple[int, CorruptCheckpointError]] = []
        state = None
        for step in reversed(steps):
            try:
                state = self.restore(step, target_state)
                break
            except CorruptCheckpointError as error:
                skipped.append((step, error))
        if skipped:
            moved = self._set_aside([step for step, _ in skipped])
            message = str(skipped[0][1])
            if len(skipped) > 1:
                message += ", and so is " + ", ".join(
                    str(self._directory / str(step)) for step, _ in skipped[1:]
                )
            resumed = (
                f"resuming from step {int(state.step)}, the newest intact checkpoint"
                if state is not None
                else "no intact checkpoint is left: starting from step 0"
            )
            warnings.warn(
                f"{message}; moved to {moved}; {resumed}", CheckpointWarning, stacklevel=2
            )
        return state

    def _set_aside(self, steps: list[int]) -> Path:
        """Moves the step folders `steps` to ``<directory>_corrupt/<step>`` (``<step>.<k>`` if
        taken) on the primary process, then makes the manager forget them; returns the folder."""
        aside = self._directory.with_name(self._directory.name + _CORRUPT_SUFFIX)
        multi = jax.process_count() > 1
        if multi:  # every process has finished reading them
            multihost_utils.sync_global_devices(f"closurejax_set_aside_before_{steps}")
        if jax.process_index() == 0:
            aside.mkdir(parents=True, exist_ok=True)
            for step in steps:
                target, k = aside / str(step), 0
                while target.exists():
                    k += 1
                    target = aside / f"{step}.{k}"
                os.replace(self._directory / str(step), target)
        if multi:
            multihost_utils.sync_global_devices(f"closurejax_set_aside_after_{steps}")
        self._manager.reload()
        return aside

    def check_compatible(self, step: int, target_state: TrainState) -> None:
        """Raises `IncompatibleCheckpointError` unless checkpoint `step` fits `target_state`."""
        self._check_signature(self.metadata(step), step, target_state)

    def _check_signature(
        self, meta: Mapping[str, Any], step: int, target_state: TrainState
    ) -> None:
        """`check_compatible` with the checkpoint's metadata `meta` already read."""
        stored = meta.get("signature")
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
        """Blocks until every pending (asynchronous) save is on disk; a Ctrl-C meanwhile takes
        effect once it is (`_interrupts_deferred`)."""
        with _interrupts_deferred():
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager's resources."""
        # orbax's close does not wait for the clean-up of temporary folders it starts when it
        # opens a folder (it waits only on a save): a process that opens, refuses and exits at
        # once would end in that thread's traceback ("cannot schedule new futures after shutdown")
        getattr(self._manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()
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
