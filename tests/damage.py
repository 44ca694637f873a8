"""Damaging files on disk the ways storage does (flipped bytes, a truncated write), for the
integrity tests of checkpoints and datasets."""

from __future__ import annotations

from pathlib import Path


def largest_file(folder: Path) -> Path:
    """The largest file under `folder` (recursively): a checkpoint's array data."""
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    assert files, f"no file under {folder}"
    return max(files, key=lambda p: p.stat().st_size)


def flip_bytes(path: Path, count: int = 8) -> None:
    """Inverts `count` bytes in the middle of `path` (its size unchanged)."""
    data = bytearray(Path(path).read_bytes())
    middle = len(data) // 2
    assert len(data) >= middle + count, f"{path} is too small to flip {count} bytes"
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def truncate(path: Path, fraction: float = 0.5) -> None:
    """Cuts `path` to `fraction` of its size (a write that stopped early)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
