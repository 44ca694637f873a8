"""Atomic writes and fingerprint-tagged .npz files."""

from __future__ import annotations

import numpy as np

from closurejax import atomic


def test_tagged_npz_round_trip_and_refusals(tmp_path) -> None:
    path = tmp_path / "result.npz"
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    atomic.save_tagged_npz(path, {"fingerprint": "abc", "steps": 7}, x=x, flag=np.array([True]))
    meta, arrays = atomic.load_tagged_npz(path, "abc")
    assert meta == {"fingerprint": "abc", "steps": 7}
    np.testing.assert_array_equal(arrays["x"], x)
    assert arrays["x"].dtype == np.float32 and set(arrays) == {"x", "flag"}
    assert atomic.load_tagged_npz(path, "other") is None  # made by something else
    assert atomic.load_tagged_npz(tmp_path / "missing.npz", "abc") is None
    path.write_bytes(b"not a zip file")
    assert atomic.load_tagged_npz(path, "abc") is None  # unreadable: the caller recomputes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.npz"]  # no temp files left


def test_tagged_meta_reads_the_meta_whatever_its_fingerprint(tmp_path) -> None:
    path = tmp_path / "result.npz"
    atomic.save_tagged_npz(path, {"fingerprint": "abc", "key": {"a": 1}}, x=np.zeros(3))
    assert atomic.tagged_meta(path) == {"fingerprint": "abc", "key": {"a": 1}}
    assert atomic.tagged_meta(tmp_path / "missing.npz") is None
    atomic.save_npz(tmp_path / "plain.npz", x=np.zeros(2))  # no meta at all
    assert atomic.tagged_meta(tmp_path / "plain.npz") is None
    atomic.save_npz(tmp_path / "list.npz", meta=np.array("[1, 2]"))  # a meta that is no dict
    assert atomic.tagged_meta(tmp_path / "list.npz") is None
    assert atomic.load_tagged_npz(tmp_path / "list.npz", "abc") is None


def test_written_files_get_the_permissions_of_a_plain_write(tmp_path) -> None:
    import os
    import stat

    old = os.umask(0o027)
    try:
        for path in (
            atomic.write_json(tmp_path / "a.json", {"x": 1}),
            atomic.save_tagged_npz(tmp_path / "b.npz", {"fingerprint": "t"}, x=np.zeros(2)),
        ):
            assert stat.S_IMODE(path.stat().st_mode) == 0o640, path  # not mkstemp's 0o600
        with open(tmp_path / "plain", "w"):
            pass
        assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o640
    finally:
        os.umask(old)
