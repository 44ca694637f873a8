"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A reader therefore sees either the old file or the complete new one, never a partial write,
even if the writing process is killed half-way (rename is atomic on POSIX file systems). The file
gets the permissions a plain `open(path, "w")` would give it (0o666 less the process's umask),
not the owner-only 0o600 of a temporary file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_write",
    "load_tagged_npz",
    "save_npy",
    "save_npz",
    "save_tagged_npz",
    "sha256_file",
    "tagged_meta",
    "write_bytes",
    "write_json",
]


def _umask() -> int:
    """The process's umask (read by setting and restoring it; there is no getter before 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, writer: Callable[[IO[bytes]], None]) -> Path:
    """Calls `writer(f)` on a temporary binary file next to `path`, then renames it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically writes `data` to `path`."""
    return atomic_write(path, lambda f: f.write(data))


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Atomically writes `obj` as JSON (keys sorted, trailing newline)."""
    text = json.dumps(obj, indent=indent, sort_keys=True) + "\n"
    return write_bytes(path, text.encode())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Atomically writes `array` in .npy format (readable with `np.load(..., mmap_mode='r')`)."""
    array = np.asarray(array)
    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Atomically writes `arrays` as one uncompressed .npz (no pickles: load with `np.load`)."""
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def save_tagged_npz(path: str | os.PathLike, meta: Any, **arrays: np.ndarray) -> Path:
    """`save_npz` with a JSON `meta` entry beside the arrays (e.g. the fingerprint of the config
    that made them); read it back with `load_tagged_npz`."""
    return save_npz(path, meta=np.array(json.dumps(meta)), **arrays)


def _read_tagged(
    path: str | os.PathLike, with_arrays: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """(meta, arrays or {}) of a `save_tagged_npz` file; None if it is missing, unreadable or
    has no dict `meta`."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if not isinstance(meta, dict):
                return None
            names = [n for n in data.files if n != "meta"] if with_arrays else []
            return meta, {name: data[name] for name in names}
    except (OSError, ValueError, KeyError):
        return None


def load_tagged_npz(
    path: str | os.PathLike, fingerprint: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """`(meta, arrays)` of a `save_tagged_npz` file whose `meta["fingerprint"]` is `fingerprint`;
    None if the file is missing, unreadable or was made by something else (recompute then)."""
    loaded = _read_tagged(path, with_arrays=True)
    if loaded is None or loaded[0].get("fingerprint") != fingerprint:
        return None
    return loaded


def tagged_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON `meta` of a `save_tagged_npz` file (without checking its fingerprint); None if
    the file is missing, unreadable or has no dict `meta`."""
    loaded = _read_tagged(path, with_arrays=False)
    return None if loaded is None else loaded[0]


def sha256_file(path: str | os.PathLike, block_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block_size):
            h.update(chunk)
    return h.hexdigest()
