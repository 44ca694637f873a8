"""Tests of closurejax.data.pipeline: determinism, exact resume, coverage, normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from closurejax.data import pipeline, store
from closurejax.data.pipeline import Batches
from closurejax.data.writer import DatasetWriter

N = 23


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "index": np.arange(N, dtype=np.float64),  # value == sample index
        "omega": (5.0 + 2.0 * rng.normal(size=(N, 4, 4))).astype(np.float32),
    }


IDENTITY = {"index": {"mean": 0.0, "std": 1.0}}


def test_order_is_default_rng_of_seed_plus_epoch() -> None:
    b = Batches(arrays(), ["index"], batch_size=5, seed=7, stats=IDENTITY)
    assert b.steps_per_epoch == 4  # 23 // 5, remainder dropped
    for step in (0, 3, 4, 9):
        epoch, j = divmod(step, 4)
        perm = np.random.default_rng(7 + epoch).permutation(N)
        np.testing.assert_array_equal(b.indices_at(step), perm[5 * j : 5 * (j + 1)])
        np.testing.assert_array_equal(b.batch_at(step)["index"], perm[5 * j : 5 * (j + 1)])


def test_deterministic_given_seed() -> None:
    stats = pipeline.compute_stats(arrays())
    first = [x["omega"] for x in Batches(arrays(), ["omega"], 4, 3, stats=stats).iterate(0, 12)]
    again = [x["omega"] for x in Batches(arrays(), ["omega"], 4, 3, stats=stats).iterate(0, 12)]
    other = Batches(arrays(), ["index"], 4, 4, stats=IDENTITY)
    same_seed = Batches(arrays(), ["index"], 4, 3, stats=IDENTITY)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(other.indices_at(0), same_seed.indices_at(0))
    # consecutive epochs are shuffled differently
    assert not np.array_equal(same_seed.epoch_permutation(0), same_seed.epoch_permutation(1))


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_resume_at_step_gives_the_same_batches(drop_remainder: bool) -> None:
    data = arrays()
    stats = pipeline.compute_stats(data)
    full = Batches(data, ["omega", "index"], 5, 11, stats=stats, drop_remainder=drop_remainder)
    reference = list(full.iterate(0, 17))  # crosses three epoch boundaries
    for k in (1, 4, 5, 9, 16):
        resumed = Batches(
            data, ["omega", "index"], 5, 11, stats=stats, drop_remainder=drop_remainder
        )
        for got, want in zip(resumed.iterate(k, 17 - k), reference[k:], strict=True):
            for name in ("omega", "index"):
                np.testing.assert_array_equal(got[name], want[name])


def test_every_sample_once_per_epoch() -> None:
    keep = Batches(arrays(), ["index"], 5, 0, stats=IDENTITY, drop_remainder=False)
    assert keep.steps_per_epoch == 5
    for epoch in range(3):
        batches = list(keep.iterate(5 * epoch, 5))
        assert [len(x["index"]) for x in batches] == [5, 5, 5, 5, 3]
        seen = np.concatenate([np.asarray(x["index"]) for x in batches])
        np.testing.assert_array_equal(np.sort(seen), np.arange(N))
    drop = Batches(arrays(), ["index"], 5, 0, stats=IDENTITY, drop_remainder=True)
    seen = np.concatenate([np.asarray(x["index"]) for x in drop.iterate(0, 4)])
    assert len(seen) == 20 and len(np.unique(seen)) == 20  # no repeats, 3 left out


def test_batches_are_rows_of_the_data() -> None:
    data = arrays()
    b = Batches(data, ["omega", "index"], 6, 2, stats={**IDENTITY, "omega": {"mean": 0, "std": 1}})
    batch = b.batch_at(5)
    idx = np.asarray(batch["index"]).astype(int)
    np.testing.assert_array_equal(batch["omega"], data["omega"][idx])
    assert batch["omega"].shape == (6, 4, 4) and batch["omega"].dtype == np.float32


def test_normalisation_round_trip() -> None:
    data = arrays()
    stats = pipeline.compute_stats(data)
    np.testing.assert_allclose(stats["omega"]["mean"], data["omega"].astype(np.float64).mean())
    b = Batches(data, ["omega"], N, 1, stats=stats)
    batch = b.batch_at(0)["omega"]  # the whole data set, shuffled
    np.testing.assert_allclose(float(batch.mean()), 0.0, atol=1e-5)
    np.testing.assert_allclose(float(batch.std()), 1.0, atol=1e-5)
    back = b.denormalise({"omega": batch})["omega"]
    np.testing.assert_allclose(back, b.raw_batch_at(0)["omega"], rtol=1e-6, atol=1e-5)
    x = np.linspace(-3, 7, 11)
    np.testing.assert_allclose(
        pipeline.denormalise(
            pipeline.normalise(x, {"mean": 2.0, "std": 4.0}), {"mean": 2.0, "std": 4.0}
        ),
        x,
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        pipeline.normalise(x, {"mean": 2.0, "std": 4.0}), (x - 2) / 4, rtol=1e-6
    )


def test_store_dataset_with_time_axis(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    omega = (3.0 + rng.normal(size=(4, 5, 2, 2))).astype(np.float32)  # [traj, time, n, n]
    specs = {"omega": store.ArraySpec((5, 2, 2), "float32")}
    writer = DatasetWriter.create_or_resume(tmp_path / "ds", {"a": 1}, specs, 4, 2)
    for i in writer.pending_chunks():
        r = writer.chunk_trajectories(i)
        writer.write_chunk(i, {"omega": omega[r.start : r.stop]})
    ds = writer.finalize([3])
    b = Batches(ds, ["omega"], 3, 0, sample_axes=2)
    assert b.num_samples == 15 and b.steps_per_epoch == 5
    train_samples = omega[:3].reshape(15, 2, 2)
    mean, std = ds.stats["omega"]["mean"], ds.stats["omega"]["std"]
    seen = np.concatenate([np.asarray(x["omega"]) for x in b.iterate(0, 5)])
    perm = b.epoch_permutation(0)
    np.testing.assert_allclose(seen, (train_samples[perm] - mean) / std, rtol=1e-5, atol=1e-6)
    test = Batches(ds, ["omega"], 5, 0, split="test", sample_axes=2)
    assert test.num_samples == 5 and test.stats == {"omega": {"mean": mean, "std": std}}


def test_validation_errors() -> None:
    data = arrays()
    with pytest.raises(ValueError, match="stats are required"):
        Batches(data, ["index"], 4, 0)
    with pytest.raises(KeyError, match="available"):
        Batches(data, ["vorticity"], 4, 0, stats=IDENTITY)
    with pytest.raises(ValueError, match="std > 0"):
        Batches(data, ["index"], 4, 0, stats={"index": {"mean": 0.0, "std": 0.0}})
    with pytest.raises(ValueError, match="exceeds the 23 samples"):
        Batches(data, ["index"], 24, 0, stats=IDENTITY)
    with pytest.raises(ValueError, match="sample axes"):
        Batches(
            {"a": np.zeros((3, 2)), "b": np.zeros((4, 2))},
            ["a", "b"],
            2,
            0,
            stats={"a": {"mean": 0, "std": 1}, "b": {"mean": 0, "std": 1}},
        )
