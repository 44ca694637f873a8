"""Writing an on-disk dataset (`closurejax.data.store` holds the format and the reader): chunked,
resumable, every file checksummed.

`DatasetWriter.create_or_resume` creates the folder or reopens it; each chunk is written
into a temporary folder, renamed into place, and only then recorded in the manifest (atomic
replace). A process killed at any moment therefore leaves either a finished chunk that the
manifest lists or nothing that is ever read; a restart continues with `pending_chunks()`. One
process writes a dataset at a time: the writer takes no lock itself, `closurejax.data.generate`
holds the workdir's (`closurejax.locking`). `finalize` streams over the chunks one
trajectory at a time (memory bounded by one trajectory of one array), writes the consolidated
train/test files, records their checksums and the train-only statistics, and marks the manifest
complete. `reopen_broken` turns a complete dataset with a corrupt or missing file back into a
resumable one (`closurejax.data.generate` does so on a rerun, repairing it).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from closurejax.atomic import atomic_write, save_npy, sha256_file, write_json
from closurejax.data.store import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SPLITS,
    ArraySpec,
    Dataset,
    DatasetCorruptError,
    DatasetError,
    DatasetIncompleteError,
    RunningStats,
    canonical_config,
    canonical_json,
    load_manifest,
    mismatch_error,
    open_dataset,
)

__all__ = ["DatasetWriter"]

_CHUNKS = "chunks"
_TMP_PREFIX = ".tmp-"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")


def _fsync_dir(path: Path) -> None:
    """Best-effort fsync of a directory, so that renames inside it are durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _validate_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"array name {name!r} is invalid: use letters, digits, '_' and '-' (it is a file name)"
        )


def _chunk_dir_name(i: int) -> str:
    return f"chunk-{i:05d}"


class _HashingWriter:
    """File wrapper that hashes every byte written through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self._f.write(data)


class DatasetWriter:
    """Chunked, resumable writer of one dataset folder. Make one with `create_or_resume`.

    Typical use::

        writer = DatasetWriter.create_or_resume(path, config, specs, 100, 10)
        for i in writer.pending_chunks():
            trajectories = writer.chunk_trajectories(i)        # range of trajectory indices
            writer.write_chunk(i, generate(trajectories))      # name -> [len(range), *shape]
        if not writer.complete:
            dataset = writer.finalize(test_trajectories=range(95, 100))
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self._path = path
        self._manifest = manifest
        self._specs = {n: ArraySpec.from_json(s) for n, s in manifest["specs"].items()}

    # ---- construction

    @classmethod
    def create_or_resume(
        cls,
        path: str | os.PathLike,
        config: Mapping[str, Any],
        specs: Mapping[str, ArraySpec],
        num_trajectories: int,
        trajectories_per_chunk: int,
    ) -> DatasetWriter:
        """Creates the dataset folder, or reopens one made from the same config and plan.

        An existing dataset (partial or complete) whose config, specs or chunk plan differ raises
        `DatasetConfigMismatchError` naming the differing keys, before anything on disk changes.
        On resume, leftover temporary files and chunk folders the manifest does not list are
        removed, and listed chunks whose files vanished become pending again. A complete dataset
        yields a writer with ``complete == True`` and no pending chunks.
        """
        path = Path(path)
        if not isinstance(num_trajectories, int) or num_trajectories < 1:
            raise ValueError(f"num_trajectories must be an int >= 1, got {num_trajectories!r}")
        if not isinstance(trajectories_per_chunk, int) or trajectories_per_chunk < 1:
            raise ValueError(
                f"trajectories_per_chunk must be an int >= 1, got {trajectories_per_chunk!r}"
            )
        if not specs:
            raise ValueError("specs must name at least one array")
        for name, spec in specs.items():
            _validate_name(name)
            if not isinstance(spec, ArraySpec):
                raise TypeError(f"spec of {name!r} must be an ArraySpec, got {type(spec)}")
        plan = {
            "config": canonical_config(config),
            "specs": {name: spec.to_json() for name, spec in sorted(specs.items())},
            "num_trajectories": num_trajectories,
            "trajectories_per_chunk": trajectories_per_chunk,
        }
        if (path / MANIFEST).exists():
            manifest = load_manifest(path)
            stored = {k: manifest[k] for k in plan}
            if canonical_json(stored) != canonical_json(plan):
                raise mismatch_error(path, stored, plan, "config or chunk plan")
            writer = cls(path, manifest)
            writer._clean_up()
            return writer
        if path.exists():
            if not path.is_dir():
                raise DatasetError(f"{path} exists and is not a folder")
            unexpected = [p.name for p in path.iterdir() if not _is_stale_manifest_tmp(p.name)]
            if unexpected:
                raise DatasetError(
                    f"{path} is not empty and holds no {MANIFEST} (found {sorted(unexpected)[:5]});"
                    " refusing to write a dataset into it"
                )
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **plan,
            "num_chunks": -(-num_trajectories // trajectories_per_chunk),
            "chunks": {},
            "complete": False,
            "split": None,
            "stats": None,
            "files": None,
        }
        writer = cls(path, manifest)
        writer._clean_up()
        writer._write_manifest()
        return writer

    # ---- plan and state

    @property
    def path(self) -> Path:
        """The dataset folder."""
        return self._path

    @property
    def config(self) -> dict[str, Any]:
        """The generating config (canonical form)."""
        return self._manifest["config"]

    @property
    def specs(self) -> dict[str, ArraySpec]:
        """name -> per-trajectory `ArraySpec`."""
        return dict(self._specs)

    @property
    def num_chunks(self) -> int:
        """Number of chunks in the plan (the last one may hold fewer trajectories)."""
        return self._manifest["num_chunks"]

    @property
    def complete(self) -> bool:
        """Whether the dataset was finalized."""
        return self._manifest["complete"]

    def finished_chunks(self) -> list[int]:
        """Indices of the chunks recorded in the manifest, ascending."""
        return sorted(int(i) for i in self._manifest["chunks"])

    def pending_chunks(self) -> list[int]:
        """Indices of the chunks still to write, ascending (``[]`` once complete)."""
        if self.complete:
            return []
        done = set(self.finished_chunks())
        return [i for i in range(self.num_chunks) if i not in done]

    def chunk_trajectories(self, i: int) -> range:
        """Trajectory indices of chunk `i`."""
        self._check_chunk_index(i)
        per = self._manifest["trajectories_per_chunk"]
        return range(i * per, min((i + 1) * per, self._manifest["num_trajectories"]))

    # ---- writing

    def write_chunk(self, i: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Writes chunk `i`: `arrays[name]` is ``[len(chunk_trajectories(i)), *spec.shape]``.

        The arrays must have exactly the spec names, shapes and dtypes and (floats) finite values;
        a `ValueError` names the array, the expected and the given shape / dtype otherwise. The
        files go to a temporary folder that is renamed into place; the manifest is updated last.
        """
        if self.complete:
            raise DatasetError(f"dataset at {self._path} is complete; nothing more to write")
        self._check_chunk_index(i)
        if str(i) in self._manifest["chunks"]:
            raise DatasetError(f"chunk {i} of {self._path} is already written")
        checked = self._validate_chunk(i, arrays)
        chunks_dir = self._path / _CHUNKS
        chunks_dir.mkdir(parents=True, exist_ok=True)
        tmp = chunks_dir / f"{_TMP_PREFIX}{_chunk_dir_name(i)}-{uuid.uuid4().hex}"
        final = chunks_dir / _chunk_dir_name(i)
        try:
            tmp.mkdir()
            files = {}
            for name, array in checked.items():
                file = save_npy(tmp / f"{name}.npy", array)
                files[name] = sha256_file(file)
            _fsync_dir(tmp)
            if final.exists():  # an orphan from a kill between rename and manifest update
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(chunks_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        trajectories = self.chunk_trajectories(i)
        self._manifest["chunks"][str(i)] = {
            "trajectories": [trajectories.start, trajectories.stop],
            "files": files,
        }
        self._write_manifest()

    def finalize(self, test_trajectories: Iterable[int]) -> Dataset:
        """Splits by trajectory, consolidates, computes train-only statistics, marks complete.

        `test_trajectories` may hold every trajectory (a test-only dataset, e.g. a zero-shot
        evaluation set): the train files then have 0 rows and `stats` is empty, so normalise
        with the statistics of the training dataset.

        Every chunk file's checksum is verified first (a corrupt chunk is reported and made
        pending again). Then, per array and split, the trajectories are streamed one at a time
        into ``<split>/<name>.npy`` (``[num_split_trajectories, *spec.shape]``, written
        atomically and hashed on the way), and the train statistics are accumulated in float64.
        The manifest is marked complete last; the chunk folders are then deleted (a kill during
        the deletion leaves folders that the next `create_or_resume` removes). Returns the
        opened `Dataset`.
        """
        if self.complete:
            raise DatasetError(f"dataset at {self._path} is already complete; use open_dataset")
        pending = self.pending_chunks()
        if pending:
            raise DatasetIncompleteError(
                f"cannot finalize {self._path}: chunks {pending} are not written yet"
            )
        n = self._manifest["num_trajectories"]
        test = sorted({int(t) for t in test_trajectories})
        bad = [t for t in test if not 0 <= t < n]
        if bad:
            raise ValueError(f"test_trajectories {bad} out of range [0, {n})")
        train = sorted(set(range(n)) - set(test))
        self._verify_chunks()
        files: dict[str, dict[str, Any]] = {}
        stats: dict[str, dict[str, Any]] = {}
        for split_name, indices in (("train", train), ("test", test)):
            for name in self._specs:
                running = RunningStats() if split_name == "train" and train else None
                rel = f"{split_name}/{name}.npy"
                files[rel] = self._consolidate(rel, name, indices, running)
                if running is not None:
                    stats[name] = running.result()
        _fsync_dir(self._path / "train")
        _fsync_dir(self._path / "test")
        self._manifest.update(
            split={"train": train, "test": test}, stats=stats, files=files, complete=True
        )
        self._write_manifest()
        shutil.rmtree(self._path / _CHUNKS, ignore_errors=True)
        return open_dataset(self._path, verify=False)

    def broken_files(self) -> list[str]:
        """The consolidated files (``"<split>/<name>.npy"``) of a complete dataset that are
        missing or whose sha256 differs from the manifest's (e.g. a truncated file); ``[]`` for
        an incomplete dataset."""
        if not self.complete:
            return []
        broken = []
        for rel, entry in sorted(self._manifest["files"].items()):
            file = self._path / rel
            if not file.is_file() or sha256_file(file) != entry.get("sha256"):
                broken.append(rel)
        return broken

    def reopen_broken(self) -> tuple[list[str], list[int]]:
        """Makes a complete dataset with broken files (`broken_files`) incomplete again, so that
        resuming it repairs them: returns ``(broken files, chunks to regenerate)``.

        The chunks whose trajectories all lie in splits with intact files are rebuilt from those
        files (no simulation); the others (holding a trajectory of a split with a broken file)
        become pending. The manifest is marked incomplete first, so a process killed during the
        repair leaves a dataset that resumes (regenerating whatever was not rebuilt). Nothing is
        changed if every file is intact.
        """
        broken = self.broken_files()
        if not broken:
            return [], []
        bad_splits = {rel.split("/", 1)[0] for rel in broken}
        split = {s: [int(t) for t in self._manifest["split"][s]] for s in SPLITS}
        where = {t: (s, k) for s in SPLITS for k, t in enumerate(split[s])}
        self._manifest.update(complete=False, chunks={}, split=None, stats=None, files=None)
        self._write_manifest()
        regenerate = []
        for i in range(self.num_chunks):
            trajectories = list(self.chunk_trajectories(i))
            if any(where[t][0] in bad_splits for t in trajectories):
                regenerate.append(i)
                continue
            arrays = {}
            for name in self._specs:
                rows = []
                for t in trajectories:
                    s, k = where[t]
                    data = np.load(self._path / s / f"{name}.npy", mmap_mode="r")
                    rows.append(np.array(data[k]))
                    del data
                arrays[name] = np.stack(rows)
            self.write_chunk(i, arrays)
        return broken, regenerate

    # ---- internals

    def _check_chunk_index(self, i: int) -> None:
        if not isinstance(i, int | np.integer) or not 0 <= i < self.num_chunks:
            raise IndexError(f"chunk index {i!r} out of range [0, {self.num_chunks})")

    def _validate_chunk(self, i: int, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self._specs) - set(arrays))
        extra = sorted(set(arrays) - set(self._specs))
        if missing or extra:
            raise ValueError(
                f"chunk {i}: arrays must be exactly {sorted(self._specs)}; "
                f"missing {missing}, unexpected {extra}"
            )
        count = len(self.chunk_trajectories(i))
        out = {}
        for name, spec in self._specs.items():
            array = np.asarray(arrays[name])
            want = (count, *spec.shape)
            if array.shape != want:
                raise ValueError(
                    f"chunk {i}: array {name!r} has shape {array.shape}, expected {want} "
                    f"([trajectories_in_chunk={count}, *spec.shape={spec.shape}])"
                )
            if array.dtype != spec.np_dtype:
                raise ValueError(
                    f"chunk {i}: array {name!r} has dtype {array.dtype}, expected {spec.dtype}"
                )
            if array.dtype.kind == "f":
                finite = np.isfinite(array)
                if not finite.all():
                    bad = np.flatnonzero(~finite)
                    where = np.unravel_index(bad[0], array.shape)
                    raise ValueError(
                        f"chunk {i}: array {name!r} has {bad.size} non-finite values "
                        f"(first at index {tuple(int(w) for w in where)}: {array[where]})"
                    )
            out[name] = array
        return out

    def _chunk_file(self, i: int, name: str) -> Path:
        return self._path / _CHUNKS / _chunk_dir_name(i) / f"{name}.npy"

    def _verify_chunks(self) -> None:
        for i in self.finished_chunks():
            for name, expected in self._manifest["chunks"][str(i)]["files"].items():
                file = self._chunk_file(i, name)
                got = sha256_file(file) if file.is_file() else "<missing>"
                if got != expected:
                    del self._manifest["chunks"][str(i)]
                    self._write_manifest()
                    raise DatasetCorruptError(
                        f"chunk file {file} is corrupt or missing (sha256 {got}, manifest "
                        f"{expected}); chunk {i} is pending again: rewrite it, then finalize"
                    )

    def _consolidate(
        self, rel: str, name: str, indices: Sequence[int], running: RunningStats | None
    ) -> dict[str, Any]:
        spec = self._specs[name]
        shape = (len(indices), *spec.shape)
        wanted = set(indices)
        hashed: list[str] = []

        def write(f: IO[bytes]) -> None:
            out = _HashingWriter(f)
            header = {
                "descr": np.lib.format.dtype_to_descr(spec.np_dtype),
                "fortran_order": False,
                "shape": shape,
            }
            np.lib.format.write_array_header_1_0(out, header)
            for i in range(self.num_chunks):
                trajectories = self.chunk_trajectories(i)
                local = [t - trajectories.start for t in trajectories if t in wanted]
                if not local:
                    continue
                chunk = np.load(self._chunk_file(i, name), mmap_mode="r", allow_pickle=False)
                for j in local:
                    row = np.ascontiguousarray(chunk[j], dtype=spec.np_dtype)
                    out.write(row.tobytes())
                    if running is not None:
                        running.update(row)
                del chunk
            hashed.append(out.sha256.hexdigest())

        atomic_write(self._path / rel, write)
        return {"sha256": hashed[0], "shape": list(shape), "dtype": spec.dtype}

    def _write_manifest(self) -> None:
        write_json(self._path / MANIFEST, self._manifest)

    def _clean_up(self) -> None:
        """Removes leftovers of a killed process: temp files/folders, unlisted chunk folders."""
        if self._path.is_dir():
            for p in self._path.iterdir():
                if _is_stale_manifest_tmp(p.name):
                    p.unlink(missing_ok=True)
        for s in SPLITS:
            folder = self._path / s
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.name.startswith(".") and p.name.endswith(".tmp"):
                        p.unlink(missing_ok=True)
        chunks_dir = self._path / _CHUNKS
        if not chunks_dir.is_dir():
            return
        if self.complete:
            shutil.rmtree(chunks_dir, ignore_errors=True)
            return
        listed = {_chunk_dir_name(i) for i in self.finished_chunks()}
        for p in chunks_dir.iterdir():
            if p.name not in listed:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        vanished = [
            i
            for i in self.finished_chunks()
            if not all(self._chunk_file(i, name).is_file() for name in self._specs)
        ]
        if vanished:
            for i in vanished:
                del self._manifest["chunks"][str(i)]
            self._write_manifest()


def _is_stale_manifest_tmp(name: str) -> bool:
    return name.startswith(f".{MANIFEST}.") and name.endswith(".tmp")
