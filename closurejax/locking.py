"""Exclusive locks on a stage's folder, so two processes never write one dataset or one run.

`hold(folder, stage)` takes an exclusive `fcntl.flock` on ``<folder>/.<stage>.lock`` for the
duration of a ``with`` block (experiments/generate_data.py and experiments/train.py: the whole
process) and writes the holder's pid, host and start time into the file. A second process
asking for the same lock is refused at once with `FolderLockedError`, one line naming the
holder. The kernel releases a flock when its process dies, however it dies, so a lock file left
behind by a killed process never blocks. On release the lock file is removed, and so are the
folders the lock created if nothing but empty folders was put in them (a refusal leaves no empty
folder, e.g. no ``<run>/checkpoints`` after train refuses a bad ``--num_steps``).

Locks are advisory and per open file: they exclude other processes (and other `hold` calls in
this process), on local file systems; NFS may not honour them.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["FolderLockedError", "hold", "lock_path"]


class FolderLockedError(ValueError):
    """The folder is locked by another process (a ValueError, so that the launchers report it
    in one line like every other refusal)."""


def lock_path(folder: str | os.PathLike, stage: str) -> Path:
    """The lock file of `stage` in `folder`: ``<folder>/.<stage>.lock``."""
    if not stage or not stage.replace("_", "").isalnum():
        raise ValueError(f"stage={stage!r} is invalid: use letters, digits and '_'")
    return Path(folder) / f".{stage}.lock"


def _holder(path: Path) -> str:
    """The holder recorded in lock file `path`, as words (or why it is unknown)."""
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on host {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not recorded yet"


def _missing_parents(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist, innermost first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _acquire(path: Path, stage: str) -> int:
    """An fd of `path` holding its exclusive flock; FolderLockedError if another holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderLockedError(
                f"{path.parent} is in use by another {stage} process ({_holder(path)}; lock "
                f"file {path}): wait for it to finish or stop it, then run this again"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder we waited on may have removed the file: lock the current one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _record(fd: int, info: dict[str, Any]) -> None:
    """Writes `info` as the lock file's content (read by a refused process)."""
    data = (json.dumps(info) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


@contextlib.contextmanager
def hold(folder: str | os.PathLike, stage: str) -> Iterator[Path]:
    """Holds the exclusive lock of `stage` on `folder` (created if missing) inside the block.

    Yields the lock file's path. Raises `FolderLockedError` (one line: the folder, the holder's
    pid, host and start time, the lock file) when another process holds it.
    """
    folder = Path(folder).expanduser().resolve()
    path = lock_path(folder, stage)
    created = _missing_parents(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = _acquire(path, stage)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        _record(
            fd,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv),
            },
        )
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a process that opened it re-checks the inode
        os.close(fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Removes `folders` (innermost first) that hold nothing but empty folders: everything in
    them was made while the lock was held, so a refusal after e.g. ``checkpoints/`` was created
    inside leaves no empty folder behind."""
    if folders:
        for root, _, _ in sorted(os.walk(folders[0]), key=lambda w: -len(Path(w[0]).parts)):
            with contextlib.suppress(OSError):
                os.rmdir(root)  # fails, and stays, unless empty
    for path in folders:
        try:
            path.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return
