"""Tests of closurejax.data.store: round trip, statistics, config checks, corruption and tampering
refused in one line (the writer's own tests: tests/data/test_writer.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from closurejax.data import store
from closurejax.data.store import (
    ArraySpec,
    DatasetConfigMismatchError,
    DatasetCorruptError,
    DatasetIncompleteError,
    DatasetNotFoundError,
    open_dataset,
)
from closurejax.data.writer import DatasetWriter

REPO = Path(__file__).resolve().parents[2]
N = 7  # trajectories
PER_CHUNK = 3  # -> chunks of 3, 3, 1
TEST = [2, 5]
TRAIN = [0, 1, 3, 4, 6]
CONFIG = {"nu": 1e-3, "grid": {"n": 4, "stride": (4, 4)}, "target": "H"}
SPECS = {"omega": ArraySpec((3, 4, 4), "float32"), "label": ArraySpec((), "int32")}


def full_data() -> dict[str, np.ndarray]:
    """`[N, *shape]` arrays whose trajectories differ in mean, so split statistics differ."""
    rng = np.random.default_rng(0)
    omega = rng.normal(size=(N, 3, 4, 4)) + 3.0 * np.arange(N)[:, None, None, None]
    return {"omega": omega.astype(np.float32), "label": np.arange(N, dtype=np.int32) * 10}


def chunk_of(data: dict[str, np.ndarray], trajectories: range) -> dict[str, np.ndarray]:
    return {k: v[trajectories.start : trajectories.stop] for k, v in data.items()}


def write_all(path: Path, config: dict = CONFIG) -> store.Dataset:
    data = full_data()
    writer = DatasetWriter.create_or_resume(path, config, SPECS, N, PER_CHUNK)
    for i in writer.pending_chunks():
        writer.write_chunk(i, chunk_of(data, writer.chunk_trajectories(i)))
    return writer.finalize(TEST)


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `path` -> (bytes, mtime_ns)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(path))] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def test_round_trip(tmp_path: Path) -> None:
    data = full_data()
    ds = write_all(tmp_path / "ds")
    assert ds.split == {"train": TRAIN, "test": TEST}
    assert ds.specs == SPECS
    assert ds.config == {"nu": 1e-3, "grid": {"n": 4, "stride": [4, 4]}, "target": "H"}
    reopened = open_dataset(tmp_path / "ds", expected_config=CONFIG)
    for name in SPECS:
        assert isinstance(reopened.train[name], np.memmap)
        assert reopened.train[name].dtype == SPECS[name].np_dtype
        np.testing.assert_array_equal(reopened.train[name], data[name][TRAIN])
        np.testing.assert_array_equal(reopened.test[name], data[name][TEST])
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["num_chunks"] == 3 and manifest["trajectories_per_chunk"] == PER_CHUNK
    assert manifest["files"]["train/omega.npy"]["sha256"] == store.sha256_file(
        tmp_path / "ds" / "train" / "omega.npy"
    )
    assert not (tmp_path / "ds" / "chunks").exists()


def test_stats_are_train_only(tmp_path: Path) -> None:
    data = full_data()
    ds = write_all(tmp_path / "ds")
    for name in SPECS:
        train = data[name][TRAIN].astype(np.float64)
        stats = ds.stats[name]
        np.testing.assert_allclose(stats["mean"], train.mean(), rtol=1e-12)
        np.testing.assert_allclose(stats["std"], train.std(), rtol=1e-12)
        assert stats["min"] == train.min() and stats["max"] == train.max()
        assert stats["count"] == train.size
        # the full data set has a clearly different mean: the test split was left out
        assert abs(data[name].astype(np.float64).mean() - stats["mean"]) > 0.1


def test_running_stats_matches_numpy_on_offset_data() -> None:
    rng = np.random.default_rng(1)
    x = 1e6 + rng.normal(size=(10, 100))
    acc = store.RunningStats()
    for block in np.array_split(x, 7):
        acc.update(block)
    res = acc.result()
    np.testing.assert_allclose(res["mean"], x.mean(), rtol=1e-14)
    np.testing.assert_allclose(res["std"], x.std(), rtol=1e-9)


def test_tuple_and_list_configs_are_the_same(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
    as_lists = {"target": "H", "grid": {"stride": [4, 4], "n": 4}, "nu": 1e-3}
    writer = DatasetWriter.create_or_resume(path, as_lists, SPECS, N, PER_CHUNK)
    assert writer.pending_chunks() == [0, 1, 2]


def test_open_dataset_checks_expected_config(tmp_path: Path) -> None:
    write_all(tmp_path / "ds")
    other = {**CONFIG, "target": "G", "extra": 1}
    with pytest.raises(DatasetConfigMismatchError) as info:
        open_dataset(tmp_path / "ds", expected_config=other)
    assert set(info.value.differences) == {"target", "extra"}
    assert "target" in str(info.value) and "extra" in str(info.value)


def test_open_missing_and_incomplete(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        open_dataset(tmp_path / "nothing")
    path = tmp_path / "partial"
    writer = DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
    writer.write_chunk(1, chunk_of(full_data(), writer.chunk_trajectories(1)))
    with pytest.raises(DatasetIncompleteError, match="2 of 3 chunks"):
        open_dataset(path)
    with pytest.raises(DatasetIncompleteError, match=r"\[0, 2\]"):
        writer.finalize(TEST)


def _flip_byte(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0x01
    p.write_bytes(bytes(raw))


def _truncate(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) - 8])


@pytest.mark.parametrize(
    "corrupt",
    [_flip_byte, _truncate, Path.unlink],
    ids=["flipped-byte", "truncated", "missing"],
)
def test_corrupt_array_file_is_named(tmp_path: Path, corrupt) -> None:
    write_all(tmp_path / "ds")
    target = tmp_path / "ds" / "test" / "omega.npy"
    corrupt(target)
    with pytest.raises(DatasetCorruptError, match=str(target)):
        open_dataset(tmp_path / "ds")


def test_truncated_file_is_caught_without_checksums(tmp_path: Path) -> None:
    write_all(tmp_path / "ds")
    target = tmp_path / "ds" / "train" / "omega.npy"
    _truncate(target)
    with pytest.raises(DatasetCorruptError, match=str(target)):
        open_dataset(tmp_path / "ds", verify=False)


def test_garbled_manifest(tmp_path: Path) -> None:
    write_all(tmp_path / "ds")
    manifest = tmp_path / "ds" / "manifest.json"
    manifest.write_text(manifest.read_text()[:-40])
    with pytest.raises(DatasetCorruptError, match="manifest"):
        open_dataset(tmp_path / "ds")
    with pytest.raises(DatasetCorruptError, match="manifest"):
        DatasetWriter.create_or_resume(tmp_path / "ds", CONFIG, SPECS, N, PER_CHUNK)


def test_test_only_dataset_has_empty_train_and_no_stats(tmp_path: Path) -> None:
    data = full_data()
    writer = DatasetWriter.create_or_resume(tmp_path / "ds", CONFIG, SPECS, N, PER_CHUNK)
    for i in writer.pending_chunks():
        writer.write_chunk(i, chunk_of(data, writer.chunk_trajectories(i)))
    writer.finalize(range(N))
    ds = open_dataset(tmp_path / "ds")
    assert ds.stats == {} and ds.split == {"train": [], "test": list(range(N))}
    assert ds.train["omega"].shape == (0, 3, 4, 4)
    np.testing.assert_array_equal(ds.test["omega"], data["omega"])


def test_array_spec_validation() -> None:
    assert ArraySpec([2, 3], np.float64) == ArraySpec((2, 3), "float64")
    with pytest.raises(ValueError, match="not supported"):
        ArraySpec((2,), "complex64")
    with pytest.raises(ValueError, match="non-negative"):
        ArraySpec((-1,), "float32")


def _tamper(path: Path, edit) -> None:
    """Applies `edit(manifest)` to the dataset's manifest.json."""
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(manifest: dict) -> None:
        obj = manifest
        for key in keys[:-1]:
            obj = obj[key]
        obj[keys[-1]] = value

    return edit


TAMPERED = [
    (_set("stats", "omega", "std", 0.0), r"stats\.omega\.std=0\.0 is impossible"),
    (_set("stats", "omega", "std", -1.0), r"stats\.omega\.std=-1\.0 is impossible"),
    (_set("stats", "omega", "std", 1e9), r"stats\.omega\.std=1000000000\.0 is impossible"),
    (_set("stats", "omega", "mean", float("nan")), r"stats\.omega\.mean=nan is not finite"),
    (_set("stats", "omega", "mean", "0"), r"stats\.omega\.mean='0' is not a number"),
    (_set("stats", "omega", "mean", 1e6), r"stats\.omega\.mean=1000000\.0 is outside \[min, max\]"),
    (_set("stats", "label", "count", 4), r"stats\.label\.count=4, but the train split holds 5"),
    (lambda m: m["stats"].pop("label"), r"stats\.label is missing"),
    (
        _set("split", "test", [2, 5, 1]),
        r"split\.train and split\.test overlap in trajectories \[1\]",
    ),
    (_set("split", "train", [0, 1, 3, 4, 4, 6]), r"split\.train lists trajectories \[4\] more"),
    (_set("split", "test", [2]), r"must cover trajectories 0\.\.\.6 once .*missing \[5\]"),
    (_set("split", "test", [2, 5, 9]), r"out of range \[9\]"),
    (_set("split", "test", [2, "5"]), r"split\.test holds \[\"5\"\], not trajectory indices"),
]


@pytest.mark.parametrize(("edit", "message"), TAMPERED)
def test_tampered_manifest_is_refused_naming_the_field(tmp_path: Path, edit, message) -> None:
    """A manifest whose statistics or split cannot be those of its files (std 0 of a varying
    array, overlapping or incomplete splits, ...) is refused on open in one line."""
    path = tmp_path / "ds"
    write_all(path)
    _tamper(path, edit)
    with pytest.raises(DatasetCorruptError, match=message) as info:
        open_dataset(path)
    assert str(info.value).startswith(f"manifest {path / 'manifest.json'}: ")
    assert "\n" not in str(info.value)


def test_constant_array_may_have_std_zero(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    writer = DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
    data = {**full_data(), "label": np.full(N, 7, np.int32)}
    for i in writer.pending_chunks():
        writer.write_chunk(i, chunk_of(data, writer.chunk_trajectories(i)))
    dataset = writer.finalize(TEST)
    assert dataset.stats["label"]["std"] == 0.0
    assert open_dataset(path).stats["label"] == dataset.stats["label"]
