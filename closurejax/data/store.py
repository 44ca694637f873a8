"""On-disk datasets: chunked, resumable writing and verified, memory-mapped reading (numpy only).

A dataset is a set of named arrays over trajectories (arXiv 2408.02965's data: e.g. 100 trajectories
of 201 snapshots, split by trajectory 95 / 5). Each array has a per-trajectory shape and dtype, its
`ArraySpec` (e.g. ``omega: [201, 64, 64] float32``). One folder holds one dataset::

    <path>/
      manifest.json                       see below; always written atomically
      chunks/chunk-00000/<name>.npy       [trajectories_in_chunk, *spec.shape]  (until finalize)
      chunks/.tmp-chunk-00003-<hex>/      a chunk being written: never read, removed on resume
      train/<name>.npy                    [num_train_trajectories, *spec.shape]
      test/<name>.npy                     [num_test_trajectories, *spec.shape]

``manifest.json`` holds ``format`` and ``format_version``; ``config`` (the generating config as
canonical JSON: sorted keys, tuples as lists); ``specs`` (name -> ``{"shape", "dtype"}``);
``num_trajectories``, ``trajectories_per_chunk`` and ``num_chunks`` (the chunk plan); ``chunks``
(for each finished chunk: its trajectory range and the sha256 of each of its files); ``split``
(``{"train": [...], "test": [...]}`` trajectory indices); ``stats`` (per array: ``mean``, ``std``
(population), ``min``, ``max`` and ``count`` over every element of the train split only, in
float64; empty for a test-only dataset); ``files`` (for each consolidated file: its sha256, shape
and dtype) and ``complete``.

Writing. `DatasetWriter.create_or_resume` creates the folder or reopens it; each chunk is written
into a temporary folder, renamed into place, and only then recorded in the manifest (atomic
replace). A process killed at any moment therefore leaves either a finished chunk that the
manifest lists or nothing that is ever read; a restart continues with `pending_chunks()`. One
process writes a dataset at a time: the writer takes no lock itself, `closurejax.data.generate`
holds the workdir's (`closurejax.locking`). `finalize` streams over the chunks one
trajectory at a time (memory bounded by one trajectory of one array), writes the consolidated
train/test files, records their checksums and the train-only statistics, and marks the manifest
complete. `reopen_broken` turns a complete dataset with a corrupt or missing file back into a
resumable one (`closurejax.data.generate` does so on a rerun, repairing it).

Reading. `open_dataset` refuses an incomplete dataset, verifies every file's checksum, shape and
dtype, optionally checks the generating config, and returns memory-mapped arrays. A manifest
that cannot describe its files is refused too, in one line naming the field: a split with
repeated, overlapping, out-of-range or missing trajectories, or statistics that are not finite,
a mean outside [min, max], a std outside [0, (max - min) / 2] or 0 for a varying array, a count
other than the train split's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from closurejax.atomic import atomic_write, save_npy, sha256_file, write_json

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "SPLITS",
    "ArraySpec",
    "Dataset",
    "DatasetConfigMismatchError",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetIncompleteError",
    "DatasetNotFoundError",
    "DatasetWriter",
    "RunningStats",
    "canonical_config",
    "config_differences",
    "open_dataset",
]

FORMAT = "closurejax-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "test")
_CHUNKS = "chunks"
_TMP_PREFIX = ".tmp-"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_DTYPE_KINDS = "biuf"  # bool, signed and unsigned integers, floats


class DatasetError(ValueError):
    """Base class of every dataset error."""


class DatasetNotFoundError(DatasetError):
    """The folder holds no manifest."""


class DatasetIncompleteError(DatasetError):
    """The dataset's manifest is not marked complete (generation unfinished)."""


class DatasetCorruptError(DatasetError):
    """A file is missing, truncated, altered or unreadable; the message names the file."""


class DatasetConfigMismatchError(DatasetError):
    """The dataset on disk was made from a different config; `differences` names the keys."""

    def __init__(self, message: str, differences: Sequence[str]) -> None:
        super().__init__(message)
        self.differences: tuple[str, ...] = tuple(differences)


# --------------------------------------------------------------------------- specs and configs


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """Per-trajectory shape and dtype of one array (the stored array is `[trajectories, *shape]`).

    `dtype` is normalised to numpy's name (``"float32"``); bool, integer and float dtypes only.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if not all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in shape):
            raise ValueError(f"ArraySpec shape must be a tuple of ints, got {self.shape!r}")
        if any(d < 0 for d in shape):
            raise ValueError(f"ArraySpec shape must be non-negative, got {self.shape!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as e:
            raise ValueError(f"ArraySpec dtype {self.dtype!r} is not a numpy dtype") from e
        if dtype.kind not in _DTYPE_KINDS:
            raise ValueError(
                f"ArraySpec dtype {self.dtype!r} not supported; allowed: bool, int, uint, float"
            )
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))
        object.__setattr__(self, "dtype", dtype.name)

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype (native byte order)."""
        return np.dtype(self.dtype)

    def to_json(self) -> dict[str, Any]:
        """``{"shape": [...], "dtype": "float32"}``."""
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ArraySpec:
        """Inverse of `to_json`."""
        return cls(tuple(obj["shape"]), str(obj["dtype"]))


def canonical_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able canonical form of a config: string keys, tuples and arrays as lists.

    Accepts nested mappings (and objects with ``to_dict()``, e.g. ml_collections ConfigDict),
    sequences, numpy scalars/arrays, str, int, float, bool and None. Two configs are equal iff
    their canonical JSON strings (sorted keys) are equal; note ``1`` and ``1.0`` differ.
    """

    def convert(x: Any, where: str) -> Any:
        if hasattr(x, "to_dict") and not isinstance(x, Mapping):
            x = x.to_dict()
        if isinstance(x, Mapping):
            out = {}
            for k, v in x.items():
                if not isinstance(k, str):
                    raise TypeError(f"config key {k!r} at {where or '<root>'} is not a string")
                out[k] = convert(v, f"{where}.{k}" if where else k)
            return out
        if isinstance(x, np.ndarray):
            return convert(x.tolist(), where)
        if isinstance(x, list | tuple):
            return [convert(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, np.generic):
            return convert(x.item(), where)
        if x is None or isinstance(x, bool | int | float | str):
            return x
        raise TypeError(
            f"config value at {where or '<root>'} of type {type(x).__name__} is not JSON-able"
        )

    if not isinstance(config, Mapping) and not hasattr(config, "to_dict"):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    return json.loads(json.dumps(convert(config, ""), sort_keys=True))


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def config_differences(stored: Any, given: Any) -> list[str]:
    """Dotted key paths at which two canonical configs differ (``[]`` iff they are equal)."""

    def diff(a: Any, b: Any, where: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            out: list[str] = []
            for k in sorted(set(a) | set(b)):
                p = f"{where}.{k}" if where else k
                if k not in a or k not in b:
                    out.append(p)
                else:
                    out.extend(diff(a[k], b[k], p))
            return out
        return [] if _canonical_json(a) == _canonical_json(b) else [where or "<root>"]

    return diff(stored, given, "")


def _lookup(obj: Any, dotted: str) -> Any:
    """Value at a dotted path of `config_differences`, or the string ``<missing>``."""
    if dotted == "<root>":
        return obj
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return "<missing>"
        obj = obj[part]
    return obj


def _short(x: Any, limit: int = 80) -> str:
    text = _canonical_json(x) if x != "<missing>" else x
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mismatch_error(
    path: Path, stored: dict[str, Any], given: dict[str, Any], what: str
) -> DatasetConfigMismatchError:
    keys = config_differences(stored, given)
    lines = [
        f"  {k}: on disk {_short(_lookup(stored, k))}, given {_short(_lookup(given, k))}"
        for k in keys
    ]
    return DatasetConfigMismatchError(
        f"dataset at {path} was made from a different {what}; differing keys: "
        f"{', '.join(keys)}\n" + "\n".join(lines),
        keys,
    )


# --------------------------------------------------------------------------- statistics


class RunningStats:
    """Streaming mean / population std / min / max of every element seen, accumulated in float64.

    Blocks are merged with Chan et al.'s pairwise update of (count, mean, M2), which stays
    accurate where the naive sum of squares would cancel.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def update(self, block: np.ndarray) -> None:
        """Adds every element of `block` (any shape)."""
        x = np.asarray(block, dtype=np.float64).ravel()
        n = x.size
        if n == 0:
            return
        m = float(x.mean())
        m2 = float(np.square(x - m).sum())
        total = self.count + n
        delta = m - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    def result(self) -> dict[str, float | int]:
        """``{"mean", "std", "min", "max", "count"}``; raises if nothing was added."""
        if self.count == 0:
            raise ValueError("statistics of an empty set of values")
        return {
            "mean": self.mean,
            "std": math.sqrt(self.m2 / self.count),
            "min": self.min,
            "max": self.max,
            "count": self.count,
        }


# --------------------------------------------------------------------------- manifest


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


def _load_manifest(path: Path) -> dict[str, Any]:
    """Reads and structurally validates ``<path>/manifest.json``."""
    file = path / MANIFEST
    if not file.is_file():
        raise DatasetNotFoundError(f"no dataset at {path}: {file} does not exist")
    try:
        manifest = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetCorruptError(f"manifest {file} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetCorruptError(f"manifest {file} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"manifest {file} has format_version {manifest.get('format_version')!r}; "
            f"this closurejax reads version {FORMAT_VERSION}"
        )
    required = {
        "config": dict,
        "specs": dict,
        "num_trajectories": int,
        "trajectories_per_chunk": int,
        "num_chunks": int,
        "chunks": dict,
        "complete": bool,
    }
    for key, kind in required.items():
        if not isinstance(manifest.get(key), kind):
            raise DatasetCorruptError(f"manifest {file}: field {key!r} missing or not a {kind}")
    try:
        specs = {name: ArraySpec.from_json(s) for name, s in manifest["specs"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetCorruptError(f"manifest {file}: invalid specs: {e}") from e
    if manifest["complete"]:
        for key in ("split", "stats", "files"):
            if not isinstance(manifest.get(key), dict):
                raise DatasetCorruptError(f"manifest {file}: complete, but {key!r} is missing")
        split = manifest["split"]
        if set(split) != set(SPLITS) or not all(isinstance(v, list) for v in split.values()):
            raise DatasetCorruptError(f"manifest {file}: invalid split {split!r}")
        for s in SPLITS:
            for name in specs:
                if not isinstance(manifest["files"].get(f"{s}/{name}.npy"), dict):
                    raise DatasetCorruptError(f"manifest {file}: no entry for {s}/{name}.npy")
        _check_split(file, split, manifest["num_trajectories"])
        _check_stats(file, manifest["stats"], specs, len(split["train"]))
    return manifest


def _check_split(file: Path, split: Mapping[str, list[Any]], num_trajectories: int) -> None:
    """Raises DatasetCorruptError unless train and test are disjoint lists of distinct integer
    trajectory indices that together cover ``range(num_trajectories)``."""
    for s in SPLITS:
        bad = [t for t in split[s] if isinstance(t, bool) or not isinstance(t, int)]
        if bad:
            raise DatasetCorruptError(
                f"manifest {file}: split.{s} holds {_short(bad)}, not trajectory indices (allowed: "
                f"integers in [0, {num_trajectories}))"
            )
        repeated = sorted({t for t in split[s] if split[s].count(t) > 1})
        if repeated:
            raise DatasetCorruptError(
                f"manifest {file}: split.{s} lists trajectories {_short(repeated)} more than once"
            )
    both = sorted(set(split["train"]) & set(split["test"]))
    if both:
        raise DatasetCorruptError(
            f"manifest {file}: split.train and split.test overlap in trajectories {_short(both)} "
            "(allowed: disjoint splits)"
        )
    covered = set(split["train"]) | set(split["test"])
    if covered != set(range(num_trajectories)):
        missing = sorted(set(range(num_trajectories)) - covered)
        extra = sorted(covered - set(range(num_trajectories)))
        raise DatasetCorruptError(
            f"manifest {file}: split.train + split.test must cover trajectories 0..."
            f"{num_trajectories - 1} once (num_trajectories={num_trajectories}); missing "
            f"{_short(missing)}, out of range {_short(extra)}"
        )


def _check_stats(
    file: Path, stats: Mapping[str, Any], specs: Mapping[str, ArraySpec], num_train: int
) -> None:
    """Raises DatasetCorruptError unless `stats` holds, for every array when the train split is
    not empty, finite ``mean``, ``std``, ``min``, ``max`` with ``min <= mean <= max`` and
    ``0 <= std <= (max - min) / 2`` (so std 0 only for a constant array: a normalisation by 0
    otherwise), and ``count`` = the train split's number of elements."""
    if num_train == 0:
        if stats:
            raise DatasetCorruptError(
                f"manifest {file}: stats given for {sorted(stats)} but the train split is empty"
            )
        return
    for name, spec in specs.items():
        stat = stats.get(name)
        where = f"manifest {file}: stats.{name}"
        if not isinstance(stat, Mapping):
            raise DatasetCorruptError(f"{where} is missing (allowed: mean, std, min, max, count)")
        values = {}
        for key in ("mean", "std", "min", "max"):
            value = stat.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DatasetCorruptError(f"{where}.{key}={value!r} is not a number")
            if not math.isfinite(value):
                raise DatasetCorruptError(f"{where}.{key}={value!r} is not finite")
            values[key] = float(value)
        low, high, std = values["min"], values["max"], values["std"]
        tol = 1e-6 * max(abs(low), abs(high), 1e-30)
        if not low - tol <= values["mean"] <= high + tol:
            raise DatasetCorruptError(
                f"{where}.mean={values['mean']!r} is outside [min, max] = [{low!r}, {high!r}]"
            )
        if not 0 <= std <= (high - low) / 2 + tol or (std == 0 and high > low):
            raise DatasetCorruptError(
                f"{where}.std={std!r} is impossible for values in [{low!r}, {high!r}] (allowed: "
                f"0 < std <= (max - min) / 2 = {(high - low) / 2!r}; 0 only for a constant array)"
            )
        count = num_train * math.prod(spec.shape)
        if stat.get("count") != count:
            raise DatasetCorruptError(
                f"{where}.count={stat.get('count')!r}, but the train split holds {count} values"
            )


def _validate_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"array name {name!r} is invalid: use letters, digits, '_' and '-' (it is a file name)"
        )


def _chunk_dir_name(i: int) -> str:
    return f"chunk-{i:05d}"


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A complete, verified dataset.

    Attributes:
      path: the dataset folder.
      config: the generating config (canonical JSON form).
      specs: name -> per-trajectory `ArraySpec`.
      stats: name -> ``{"mean", "std", "min", "max", "count"}`` over the train split only
        (``{}`` when the train split is empty).
      split: ``{"train": [...], "test": [...]}`` sorted trajectory indices.
      train, test: name -> read-only memory-mapped ``[num_split_trajectories, *spec.shape]``.
      manifest: the whole manifest.
    """

    path: Path
    config: dict[str, Any]
    specs: dict[str, ArraySpec]
    stats: dict[str, dict[str, float]]
    split: dict[str, list[int]]
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    manifest: dict[str, Any]

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """The arrays of `split` ("train" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {SPLITS}")
        return self.train if split == "train" else self.test


def open_dataset(
    path: str | os.PathLike,
    expected_config: Mapping[str, Any] | None = None,
    verify: bool = True,
) -> Dataset:
    """Opens a complete dataset folder written by `DatasetWriter`.

    Checks that the manifest exists, is well formed and marked complete; with `verify`, that the
    sha256 of every consolidated file matches the manifest; that every file's shape is
    ``[len(split), *spec.shape]`` with the spec's dtype; and, if given, that `expected_config`
    equals the stored config (canonical JSON).

    Raises:
      DatasetNotFoundError: no manifest.  DatasetIncompleteError: generation unfinished.
      DatasetCorruptError: a garbled manifest or a missing / altered / truncated array file.
      DatasetConfigMismatchError: `expected_config` differs; the message lists the keys.
    """
    path = Path(path)
    manifest = _load_manifest(path)
    if not manifest["complete"]:
        pending = manifest["num_chunks"] - len(manifest["chunks"])
        raise DatasetIncompleteError(
            f"dataset at {path} is incomplete ({pending} of {manifest['num_chunks']} chunks "
            "pending, or not finalized); resume it with DatasetWriter.create_or_resume"
        )
    if expected_config is not None:
        given = canonical_config(expected_config)
        if _canonical_json(given) != _canonical_json(manifest["config"]):
            raise _mismatch_error(path, manifest["config"], given, "config")
    specs = {name: ArraySpec.from_json(s) for name, s in manifest["specs"].items()}
    split = {s: [int(i) for i in manifest["split"][s]] for s in SPLITS}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for s in SPLITS:
        arrays[s] = {}
        for name, spec in specs.items():
            rel = f"{s}/{name}.npy"
            file = path / rel
            if not file.is_file():
                raise DatasetCorruptError(f"dataset at {path}: file {file} is missing")
            if verify:
                expected = manifest["files"][rel].get("sha256")
                got = sha256_file(file)
                if got != expected:
                    raise DatasetCorruptError(
                        f"dataset at {path}: checksum mismatch for {file} "
                        f"(manifest {expected}, file {got}); the file is corrupt"
                    )
            try:
                array = np.load(file, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise DatasetCorruptError(f"dataset at {path}: cannot read {file}: {e}") from e
            want = (len(split[s]), *spec.shape)
            if array.shape != want or array.dtype != spec.np_dtype:
                raise DatasetCorruptError(
                    f"dataset at {path}: {file} holds {array.shape} {array.dtype}, "
                    f"the manifest says {want} {spec.dtype}"
                )
            arrays[s][name] = array
    return Dataset(
        path=path,
        config=manifest["config"],
        specs=specs,
        stats=manifest["stats"],
        split=split,
        train=arrays["train"],
        test=arrays["test"],
        manifest=manifest,
    )


# --------------------------------------------------------------------------- writing


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
            manifest = _load_manifest(path)
            stored = {k: manifest[k] for k in plan}
            if _canonical_json(stored) != _canonical_json(plan):
                raise _mismatch_error(path, stored, plan, "config or chunk plan")
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
