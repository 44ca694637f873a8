"""Tests of closurejax.training.checkpoint: round trip, keep-N, atomicity under a kill,
refusal of an incompatible architecture, integrity (checksums, corrupt checkpoints refused or
skipped on resume)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from closurejax.training.checkpoint import (
    CheckpointManager,
    CheckpointWarning,
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    tree_digest,
    tree_signature,
)
from closurejax.training.state import TrainState
from tests.damage import flip_bytes, largest_file, truncate

ROOT = Path(__file__).resolve().parents[2]


def mlp_init(widths: tuple[int, ...]):
    """``key -> params`` of an MLP with layer sizes `widths`."""

    def init(key: jax.Array) -> dict:
        params = {}
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            key, sub = jax.random.split(key)
            params[f"dense_{i}"] = {
                "kernel": jax.random.normal(sub, (a, b)) / np.sqrt(a),
                "bias": jnp.zeros((b,)),
            }
        return params

    return init


def make_state(widths: tuple[int, ...] = (1, 8, 1), seed: int = 0) -> TrainState:
    return TrainState.create(mlp_init(widths), optax.adam(1e-3), jax.random.key(seed))


def bump(state: TrainState, step: int) -> TrainState:
    """A distinct state at `step` (params shifted by the step)."""
    return state.replace(
        step=jnp.asarray(step, jnp.int32),
        params=jax.tree.map(lambda p: p + step, state.params),
    )


def assert_trees_equal(a, b) -> None:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_with_metadata_and_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manager = CheckpointManager("ckpt", keep=2)  # relative: resolved, orbax needs absolute
    assert manager.directory == (tmp_path / "ckpt").resolve()
    assert manager.restore_latest(make_state()) is None
    state = bump(make_state(), 3)
    assert manager.save(state, {"config": {"width": 8, "sizes": (1, 8, 1)}}) == 3
    manager.wait()
    with pytest.raises(ValueError, match="step 3 already exists"):
        manager.save(state)
    meta = manager.metadata()
    assert meta["config"] == {"width": 8, "sizes": [1, 8, 1]} and meta["step"] == 3
    assert meta["signature"]["params/dense_0/kernel"] == {"shape": [1, 8], "dtype": "float32"}
    assert meta["signature"] == tree_signature(state)
    restored = CheckpointManager(tmp_path / "ckpt").restore_latest(make_state(seed=1))
    assert isinstance(restored, TrainState) and int(restored.step) == 3
    assert_trees_equal(restored, state)
    # an abstract target (shapes only) works too
    abstract = jax.eval_shape(lambda: make_state())
    assert_trees_equal(manager.restore(3, abstract), state)
    with pytest.raises(FileNotFoundError, match="no checkpoint of step 7"):
        manager.restore(7, state)
    manager.close()


def test_keep_n_deletes_the_oldest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    base = make_state()
    for step in range(1, 6):
        manager.save(bump(base, step))
    manager.wait()
    assert manager.all_steps() == [4, 5] and manager.latest_step() == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4", "5"]
    assert_trees_equal(manager.restore(4, base), bump(base, 4))
    with pytest.raises(ValueError, match="keep must be an int >= 1"):
        CheckpointManager(tmp_path, keep=0)


def test_incompatible_architecture_is_refused_clearly(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(bump(make_state((1, 8, 1)), 2))
    manager.wait()
    with pytest.raises(IncompatibleCheckpointError) as info:
        manager.restore_latest(make_state((1, 16, 1)))
    msg = str(info.value)
    assert "architecture" in msg and "'params/dense_0/bias'" in msg, msg
    assert "(8,)" in msg and "(16,)" in msg, msg
    with pytest.raises(IncompatibleCheckpointError, match="'params/dense_2/bias'.*not in the"):
        manager.restore_latest(make_state((1, 8, 1, 1)))
    # same architecture, other optimiser state (clipping adds a chain level)
    other_opt = TrainState.create(
        mlp_init((1, 8, 1)),
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)),
        jax.random.key(0),
    )
    with pytest.raises(IncompatibleCheckpointError, match="train state: 'opt_state/"):
        manager.restore_latest(other_opt)
    # dtype differences are caught too
    as_f16 = make_state().replace(
        params=jax.tree.map(lambda p: p.astype(jnp.float16), make_state().params)
    )
    with pytest.raises(IncompatibleCheckpointError, match="float16"):
        manager.restore_latest(as_f16)


KILLED_SAVE = """
import os, signal, sys, threading, time
import jax, jax.numpy as jnp, optax
from pathlib import Path
from closurejax.training.state import TrainState
from closurejax.training.checkpoint import CheckpointManager
import orbax.checkpoint._src.path.atomicity as atomicity

directory, mode = Path(sys.argv[1]), sys.argv[2]
state = TrainState.create(
    lambda k: {"w": jax.random.normal(k, (1500, 1500))}, optax.adam(1e-3), jax.random.key(0)
)
manager = CheckpointManager(directory, keep=3)
manager.save(state.replace(step=jnp.int32(1)))
manager.wait()
print("saved 1", flush=True)

if mode == "before_commit":
    # all data written, killed just before orbax's commit rename
    def finalize(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    atomicity.AtomicRenameTemporaryPath.finalize = finalize
else:
    # killed as soon as the temporary folder exists, while the arrays are being written
    def watch():
        while True:
            if any(".orbax-checkpoint-tmp" in p.name for p in directory.iterdir()):
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.0002)
    threading.Thread(target=watch, daemon=True).start()

big = state.replace(step=jnp.int32(2), params={"w": state.params["w"] + 1})
manager.save(big)
manager.wait()
print("not killed", flush=True)
"""


@pytest.mark.parametrize("mode", ["before_commit", "while_writing"])
def test_killed_save_leaves_a_restorable_latest(tmp_path: Path, mode: str) -> None:
    directory = tmp_path / "ckpt"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_SAVE), str(directory), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == -9, f"not killed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "saved 1" in proc.stdout and "not killed" not in proc.stdout
    leftovers = [p.name for p in directory.iterdir() if ".orbax-checkpoint-tmp" in p.name]
    assert leftovers, "the killed save left no temporary folder: the kill came too late"

    manager = CheckpointManager(directory, keep=3)
    assert manager.latest_step() == 1 and manager.all_steps() == [1]
    target = TrainState.create(
        lambda k: {"w": jnp.zeros((1500, 1500))}, optax.adam(1e-3), jax.random.key(5)
    )
    restored = manager.restore_latest(target)
    assert int(restored.step) == 1
    expected = jax.random.normal(jax.random.split(jax.random.key(0))[0], (1500, 1500))
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.asarray(expected))
    # opening the manager removed the unfinished folder; saving step 2 again works
    assert not any(".orbax-checkpoint-tmp" in p.name for p in directory.iterdir())
    manager.save(restored.replace(step=jnp.int32(2)))
    manager.wait()
    assert manager.all_steps() == [1, 2]


def saved_steps(directory: Path, steps: tuple[int, ...], widths=(1, 4096, 1)) -> TrainState:
    """Saves `bump(make_state(widths), k)` for each k in `steps`; returns the base state (4096
    wide: the largest file of a step's `state/` is array data)."""
    manager = CheckpointManager(directory, keep=5)
    base = make_state(widths)
    for step in steps:
        manager.save(bump(base, step))
    manager.close()
    return base


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (flip_bytes, "its arrays differ from the checksum saved with them"),
        (truncate, "its arrays cannot be read"),
    ],
)
def test_corrupt_checkpoint_is_refused_in_one_line_and_resume_falls_back(
    tmp_path: Path, damage, reason: str
) -> None:
    """Flipped bytes (which orbax restores without error) and a truncated array file are
    refused naming the step folder; with `skip_corrupt` the newest intact step is restored, the
    corrupt ones are moved aside with one warning naming them, and their steps can be saved
    again."""
    directory = tmp_path / "ckpt"
    base = saved_steps(directory, (1, 2, 3))
    for step in (2, 3):
        damage(largest_file(directory / str(step) / "state"))
    manager = CheckpointManager(directory, keep=5)
    with pytest.raises(CorruptCheckpointError) as info:
        manager.restore_latest(base)
    message = str(info.value)
    assert message.startswith(f"checkpoint {directory / '3'} is corrupt: {reason}"), message
    assert "\n" not in message and len(message) < 400, message
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint {directory / '2'} is corrupt"):
        manager.restore(2, base)

    with pytest.warns(CheckpointWarning) as caught:
        restored = manager.restore_latest(base, skip_corrupt=True)
    assert len(caught) == 1
    warning = str(caught[0].message)
    assert (
        "\n" not in warning and str(directory / "3") in warning and str(directory / "2") in warning
    )
    assert f"moved to {tmp_path / 'ckpt_corrupt'}" in warning
    assert warning.endswith("resuming from step 1, the newest intact checkpoint"), warning
    assert_trees_equal(restored, bump(base, 1))
    assert manager.all_steps() == [1]
    assert sorted(p.name for p in (tmp_path / "ckpt_corrupt").iterdir()) == ["2", "3"]
    manager.save(bump(base, 2))  # the step of a corrupt checkpoint is saved afresh
    manager.wait()
    assert_trees_equal(manager.restore(2, base), bump(base, 2))
    manager.close()


def test_resume_with_no_intact_checkpoint_starts_afresh(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    base = saved_steps(directory, (1,))
    truncate(largest_file(directory / "1" / "state"))
    saved_steps(tmp_path / "other", (1,))  # a second corrupt step 1 is set aside beside the first
    (tmp_path / "ckpt_corrupt").mkdir()
    (tmp_path / "ckpt_corrupt" / "1").mkdir()
    manager = CheckpointManager(directory)
    with pytest.warns(
        CheckpointWarning, match="no intact checkpoint is left: starting from step 0"
    ):
        assert manager.restore_latest(base, skip_corrupt=True) is None
    assert manager.all_steps() == [] and (tmp_path / "ckpt_corrupt" / "1.1" / "state").is_dir()
    manager.close()


def test_unreadable_metadata_is_refused_in_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    base = saved_steps(directory, (1,))
    (directory / "1" / "metadata" / "metadata").write_text('{"step": 1, "signa')
    manager = CheckpointManager(directory)
    for attempt in (manager.metadata, lambda: manager.restore_latest(base)):
        with pytest.raises(CorruptCheckpointError, match="its metadata cannot be read") as info:
            attempt()
        assert "\n" not in str(info.value)
    manager.close()


def test_checkpoint_without_checksum_loads_with_one_warning(tmp_path: Path) -> None:
    """A checkpoint written before checksums were kept (no ``state_sha256`` in its metadata)
    still loads, saying once that it was not verified."""
    directory = tmp_path / "ckpt"
    base = saved_steps(directory, (1,))
    path = directory / "1" / "metadata" / "metadata"
    meta = json.loads(path.read_text())
    assert len(meta.pop("state_sha256")) == 64
    path.write_text(json.dumps(meta))
    manager = CheckpointManager(directory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):
            assert_trees_equal(manager.restore_latest(base), bump(base, 1))
    assert [type(w.message) for w in caught] == [CheckpointWarning], caught
    assert str(caught[0].message) == (
        f"checkpoint {directory / '1'} has no checksum (written before closurejax kept them): "
        "loaded without an integrity check"
    )
    manager.close()


def test_tree_digest_covers_bytes_shapes_and_paths() -> None:
    state = make_state()
    digest = tree_digest(state)
    assert digest == tree_digest(jax.device_get(state)) and len(digest) == 64
    flipped = state.replace(params=jax.tree.map(lambda p: p.at[0].add(1e-7), state.params))
    assert tree_digest(flipped) != digest
    renamed = state.replace(params={"other": state.params["dense_0"], **state.params})
    assert tree_digest(renamed) != digest
    reshaped = {"a": np.zeros((2, 3), np.float32)}
    assert tree_digest(reshaped) != tree_digest({"a": np.zeros((3, 2), np.float32)})


def test_a_ctrl_c_during_a_save_waits_for_it_and_then_interrupts(tmp_path) -> None:
    import os
    import signal

    from closurejax.training import checkpoint

    manager = CheckpointManager(tmp_path / "ckpt", keep=2)
    state = bump(make_state(), 3)
    finished = []
    # Python's own handler, as at a terminal (a run started with `cmd &` ignores SIGINT)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with checkpoint._interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)  # arrives inside the block
                manager.save(state)
                manager.wait()
                finished.append(True)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, outer)
    assert finished == [True]  # the block ran to its end before the interrupt was delivered
    assert manager.latest_step() == int(state.step)
    manager.close()
