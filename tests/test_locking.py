"""Tests of closurejax.locking: a second process is refused naming the holder, a killed
holder's lock does not block, release leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from closurejax import locking
from tests.processes import holding_lock


def test_second_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with holding_lock(folder, "train") as holder:
        path = folder / ".train.lock"
        info = json.loads(path.read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        with pytest.raises(locking.FolderLockedError) as caught:
            with locking.hold(folder, "train"):
                pytest.fail("the lock was taken twice")
        message = str(caught.value)
        assert "\n" not in message, message
        assert message.startswith(f"{folder} is in use by another train process (pid {holder.pid}")
        assert f"on host {socket.gethostname()}" in message and str(path) in message
        with locking.hold(folder, "generate_data"):  # another stage's lock is independent
            pass
        assert path.exists()  # the refused process left the holder's file alone
    # the holder was killed (SIGKILL): its lock file is left behind but does not block
    assert path.exists()
    with locking.hold(folder, "train") as held:
        assert held == path and json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_a_killed_holder_never_blocks(tmp_path: Path) -> None:
    with holding_lock(tmp_path, "generate_data") as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        assert (tmp_path / ".generate_data.lock").exists()
        with locking.hold(tmp_path, "generate_data"):
            pass


def test_hold_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    with locking.hold(tmp_path, "train"):
        with pytest.raises(locking.FolderLockedError, match=f"pid {os.getpid()} on host"):
            with locking.hold(tmp_path, "train"):
                pass
    with locking.hold(tmp_path, "train"):  # released
        pass


def test_release_removes_the_lock_file_and_the_empty_folders_it_made(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    with locking.hold(folder, "train"):
        assert folder.is_dir()
    assert not (tmp_path / "a").exists()
    with locking.hold(folder, "train"):
        (folder / "metrics.jsonl").write_text("")
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.jsonl"]


def test_release_removes_empty_folders_made_inside_a_folder_it_made(tmp_path: Path) -> None:
    """A refusal after e.g. ``checkpoints/`` was created in the run folder leaves nothing."""
    folder = tmp_path / "a" / "score"
    with pytest.raises(ValueError, match="refused"):
        with locking.hold(folder, "train"):
            (folder / "checkpoints" / "tmp").mkdir(parents=True)
            raise ValueError("refused")
    assert list(tmp_path.iterdir()) == []
    (folder / "checkpoints").mkdir(parents=True)  # a folder it did not make stays, even empty
    with locking.hold(folder, "train"):
        (folder / "new").mkdir()
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "new"]
    with locking.hold(tmp_path / "b", "train"):  # a file made inside keeps its folders
        (tmp_path / "b" / "checkpoints" / "2").mkdir(parents=True)
        (tmp_path / "b" / "checkpoints" / "2" / "x").write_text("")
        (tmp_path / "b" / "empty").mkdir()
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "b").rglob("*")) == [
        "b/checkpoints",
        "b/checkpoints/2",
        "b/checkpoints/2/x",
    ]
    with pytest.raises(ValueError, match="stage='../x' is invalid"):
        locking.lock_path(tmp_path, "../x")
