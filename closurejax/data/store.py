"""On-disk datasets: the format, and verified, memory-mapped reading (numpy only).

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

Writing: `closurejax.data.writer.DatasetWriter` (chunked and resumable).

Reading. `open_dataset` refuses an incomplete dataset, verifies every file's checksum, shape and
dtype, optionally checks the generating config, and returns memory-mapped arrays. A manifest
that cannot describe its files is refused too, in one line naming the field: a split with
repeated, overlapping, out-of-range or missing trajectories, or statistics that are not finite,
a mean outside [min, max], a std outside [0, (max - min) / 2] or 0 for a varying array, a count
other than the train split's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from closurejax.atomic import sha256_file

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
    "RunningStats",
    "canonical_config",
    "canonical_json",
    "config_differences",
    "load_manifest",
    "mismatch_error",
    "open_dataset",
]

FORMAT = "closurejax-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "test")
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


def canonical_json(obj: Any) -> str:
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
        return [] if canonical_json(a) == canonical_json(b) else [where or "<root>"]

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
    text = canonical_json(x) if x != "<missing>" else x
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mismatch_error(
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


def load_manifest(path: Path) -> dict[str, Any]:
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
    manifest = load_manifest(path)
    if not manifest["complete"]:
        pending = manifest["num_chunks"] - len(manifest["chunks"])
        raise DatasetIncompleteError(
            f"dataset at {path} is incomplete ({pending} of {manifest['num_chunks']} chunks "
            "pending, or not finalized); resume it with writer.DatasetWriter.create_or_resume"
        )
    if expected_config is not None:
        given = canonical_config(expected_config)
        if canonical_json(given) != canonical_json(manifest["config"]):
            raise mismatch_error(path, manifest["config"], given, "config")
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
