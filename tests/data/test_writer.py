"""Tests of closurejax.data.writer: resume after a kill, stale and orphan files, the config and
plan checks before anything on disk changes, chunk validation, corrupt chunks at finalize (on
the datasets of tests/data/test_store.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from closurejax.data.store import (
    ArraySpec,
    DatasetConfigMismatchError,
    DatasetCorruptError,
    DatasetError,
    DatasetIncompleteError,
    open_dataset,
)
from closurejax.data.writer import DatasetWriter
from tests.data.test_store import (
    CONFIG,
    PER_CHUNK,
    REPO,
    SPECS,
    TEST,
    TRAIN,
    N,
    _flip_byte,
    chunk_of,
    full_data,
    snapshot,
    write_all,
)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path) -> None:
    path = tmp_path / "killed"
    # A child process writes chunks 0 and 1, then dies (os._exit) after the first file of chunk 2.
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from closurejax.data import writer
        from closurejax.data.writer import DatasetWriter
        import test_store as t
        data = t.full_data()
        w = DatasetWriter.create_or_resume({str(path)!r}, t.CONFIG, t.SPECS, t.N, t.PER_CHUNK)
        for i in (0, 1):
            w.write_chunk(i, t.chunk_of(data, w.chunk_trajectories(i)))
        real_save = writer.save_npy
        def dying_save(p, a):
            real_save(p, a)
            os._exit(3)
        writer.save_npy = dying_save
        w.write_chunk(2, t.chunk_of(data, w.chunk_trajectories(2)))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    leftovers = [p.name for p in (path / "chunks").iterdir()]
    assert any(name.startswith(".tmp-chunk-00002") for name in leftovers), leftovers
    with pytest.raises(DatasetIncompleteError):
        open_dataset(path)

    data = full_data()
    writer = DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
    assert writer.pending_chunks() == [2]
    assert writer.finished_chunks() == [0, 1]
    assert sorted(p.name for p in (path / "chunks").iterdir()) == ["chunk-00000", "chunk-00001"]
    for i in writer.pending_chunks():
        writer.write_chunk(i, chunk_of(data, writer.chunk_trajectories(i)))
    resumed = writer.finalize(TEST)

    reference = write_all(tmp_path / "uninterrupted")
    for split in ("train", "test"):
        for name in SPECS:
            np.testing.assert_array_equal(
                resumed.arrays(split)[name], reference.arrays(split)[name]
            )
    assert resumed.manifest["files"] == reference.manifest["files"]
    assert resumed.stats == reference.stats


def test_stale_temp_and_orphan_chunk_folders_are_removed_and_never_read(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    data = full_data()
    writer = DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
    writer.write_chunk(0, chunk_of(data, writer.chunk_trajectories(0)))
    del writer
    # A stale temp folder and an orphan chunk (renamed into place, manifest never updated), both
    # holding plausible but wrong data: if either were read, the consolidated data would differ.
    wrong = {"omega": np.full((3, 3, 4, 4), 99.0, np.float32), "label": np.full(3, -1, np.int32)}
    for folder in (".tmp-chunk-00001-deadbeef", "chunk-00001"):
        for name, array in wrong.items():
            (path / "chunks" / folder).mkdir(parents=True, exist_ok=True)
            np.save(path / "chunks" / folder / f"{name}.npy", array)
    (path / ".manifest.json.abc123.tmp").write_text("{garbage")

    writer = DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
    assert writer.pending_chunks() == [1, 2]
    assert sorted(p.name for p in (path / "chunks").iterdir()) == ["chunk-00000"]
    assert not (path / ".manifest.json.abc123.tmp").exists()
    for i in writer.pending_chunks():
        writer.write_chunk(i, chunk_of(data, writer.chunk_trajectories(i)))
    ds = writer.finalize(TEST)
    np.testing.assert_array_equal(ds.train["omega"], data["omega"][TRAIN])
    np.testing.assert_array_equal(ds.test["label"], data["label"][TEST])


def test_resume_complete_dataset_reports_complete(tmp_path: Path) -> None:
    write_all(tmp_path / "ds")
    writer = DatasetWriter.create_or_resume(tmp_path / "ds", CONFIG, SPECS, N, PER_CHUNK)
    assert writer.complete and writer.pending_chunks() == []
    with pytest.raises(DatasetError, match="complete"):
        writer.write_chunk(0, chunk_of(full_data(), range(0, 3)))
    with pytest.raises(DatasetError, match="complete"):
        writer.finalize(TEST)


@pytest.mark.parametrize("complete", [False, True])
def test_config_mismatch_is_refused_and_leaves_files_untouched(
    tmp_path: Path, complete: bool
) -> None:
    path = tmp_path / "ds"
    if complete:
        write_all(path)
    else:
        writer = DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
        writer.write_chunk(0, chunk_of(full_data(), writer.chunk_trajectories(0)))
        (path / "chunks" / ".tmp-chunk-00001-cafe").mkdir()  # would be cleaned on a resume
    before = snapshot(path)
    other = {**CONFIG, "nu": 1e-4, "grid": {"n": 4, "stride": (4, 4)}}
    with pytest.raises(DatasetConfigMismatchError) as info:
        DatasetWriter.create_or_resume(path, other, SPECS, N, PER_CHUNK)
    assert info.value.differences == ("config.nu",)
    assert "config.nu" in str(info.value) and "0.0001" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(DatasetConfigMismatchError, match="num_trajectories"):
        DatasetWriter.create_or_resume(path, CONFIG, SPECS, N + 1, PER_CHUNK)
    with pytest.raises(DatasetConfigMismatchError, match="specs.omega.shape"):
        specs = {**SPECS, "omega": ArraySpec((3, 4, 5), "float32")}
        DatasetWriter.create_or_resume(path, CONFIG, specs, N, PER_CHUNK)
    assert snapshot(path) == before
    if not complete:
        assert (path / "chunks" / ".tmp-chunk-00001-cafe").is_dir()


def test_refuses_non_empty_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        DatasetWriter.create_or_resume(tmp_path / "ds", CONFIG, SPECS, N, PER_CHUNK)
    assert (tmp_path / "ds" / "notes.txt").read_text() == "mine"


def test_corrupt_chunk_is_detected_at_finalize_and_made_pending(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    data = full_data()
    writer = DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
    for i in writer.pending_chunks():
        writer.write_chunk(i, chunk_of(data, writer.chunk_trajectories(i)))
    _flip_byte(path / "chunks" / "chunk-00001" / "omega.npy")
    with pytest.raises(DatasetCorruptError, match="chunk-00001"):
        writer.finalize(TEST)
    writer = DatasetWriter.create_or_resume(path, CONFIG, SPECS, N, PER_CHUNK)
    assert writer.pending_chunks() == [1]
    writer.write_chunk(1, chunk_of(data, writer.chunk_trajectories(1)))
    ds = writer.finalize(TEST)
    np.testing.assert_array_equal(ds.train["omega"], data["omega"][TRAIN])


def test_write_chunk_validation(tmp_path: Path) -> None:
    data = full_data()
    writer = DatasetWriter.create_or_resume(tmp_path / "ds", CONFIG, SPECS, N, PER_CHUNK)
    good = chunk_of(data, writer.chunk_trajectories(2))  # the short last chunk: 1 trajectory
    bad_shape = {**good, "omega": np.zeros((1, 3, 4, 5), np.float32)}
    with pytest.raises(
        ValueError, match=r"'omega' has shape \(1, 3, 4, 5\), expected \(1, 3, 4, 4\)"
    ):
        writer.write_chunk(2, bad_shape)
    nan = good["omega"].copy()
    nan[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"'omega' has 1 non-finite.*\(0, 1, 2, 3\)"):
        writer.write_chunk(2, {**good, "omega": nan})
    with pytest.raises(ValueError, match="'label' has dtype int64, expected int32"):
        writer.write_chunk(2, {**good, "label": good["label"].astype(np.int64)})
    with pytest.raises(ValueError, match=r"missing \['label'\]"):
        writer.write_chunk(2, {"omega": good["omega"]})
    with pytest.raises(IndexError):
        writer.write_chunk(3, good)
    assert writer.pending_chunks() == [0, 1, 2]  # nothing was recorded
    assert not (tmp_path / "ds" / "chunks").exists()  # validation precedes any write
    writer.write_chunk(2, good)
    with pytest.raises(DatasetError, match="already written"):
        writer.write_chunk(2, good)
    assert writer.pending_chunks() == [0, 1]


def test_finalize_validates_split(tmp_path: Path) -> None:
    data = full_data()
    writer = DatasetWriter.create_or_resume(tmp_path / "ds", CONFIG, SPECS, N, PER_CHUNK)
    for i in writer.pending_chunks():
        writer.write_chunk(i, chunk_of(data, writer.chunk_trajectories(i)))
    with pytest.raises(ValueError, match=r"\[7\] out of range"):
        writer.finalize([1, 7])
    assert not writer.complete
