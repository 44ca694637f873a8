"""Shuffled, normalised training batches: deterministic given (seed, step), resumable at any step.

Samples are rows of arrays that share their leading sample axes: a store `Dataset` split (e.g.
``omega: [trajectories, time, n, n]`` with ``sample_axes=2`` -> ``[trajectories * time, n, n]``
samples; arXiv 2408.02965 trains on 19000 snapshots of 64^2) or a plain mapping of ``[N, ...]``
arrays. Each array is normalised with its own scalar statistics, ``(x - mean) / std`` (the store
records them over the train split only).

Order: global step k lies in epoch ``e = k // steps_per_epoch`` at position
``j = k % steps_per_epoch``; the epoch's order is
``numpy.random.default_rng(seed + e).permutation(N)`` and the batch holds its entries
``[j * batch_size, (j + 1) * batch_size)``. The batch at step k is therefore a function of
(seed, k) alone, so training resumed at step k sees exactly the batches an uninterrupted run
would. With ``drop_remainder`` the last ``N % batch_size`` samples of each epoch's order are
skipped (a different subset each epoch); without it the last batch of an epoch is smaller.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.data.store import SPLITS, Dataset, RunningStats

__all__ = ["Batches", "compute_stats", "denormalise", "normalise"]

Stats = Mapping[str, Mapping[str, float]]


def normalise(x: jax.Array | np.ndarray, stat: Mapping[str, float]) -> jax.Array:
    """``(x - stat["mean"]) / stat["std"]``, any shape."""
    return (jnp.asarray(x) - stat["mean"]) / stat["std"]


def denormalise(x: jax.Array | np.ndarray, stat: Mapping[str, float]) -> jax.Array:
    """Inverse of `normalise`: ``x * stat["std"] + stat["mean"]``, any shape."""
    return jnp.asarray(x) * stat["std"] + stat["mean"]


def compute_stats(
    arrays: Mapping[str, np.ndarray], block_size: int = 256
) -> dict[str, dict[str, float | int]]:
    """Per array, mean / population std / min / max over every element, in float64.

    Streams over blocks of `block_size` rows of the first axis (memory-mapped arrays stay on
    disk). Compute it on training data only.
    """
    out = {}
    for name, array in arrays.items():
        running = RunningStats()
        for start in range(0, len(array), block_size):
            running.update(np.asarray(array[start : start + block_size]))
        out[name] = running.result()
    return out


def _check_stat(name: str, stat: Any) -> tuple[float, float]:
    if not isinstance(stat, Mapping) or "mean" not in stat or "std" not in stat:
        raise ValueError(f"stats for {name!r} must be a mapping with 'mean' and 'std', got {stat}")
    mean, std = float(stat["mean"]), float(stat["std"])
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ValueError(
            f"stats for {name!r}: need finite mean and std > 0, got mean={mean}, std={std}"
        )
    return mean, std


class Batches:
    """Deterministic, resumable, shuffled and normalised batches over one split.

    Args:
      source: a store `Dataset` (its `split` arrays and, by default, its train statistics) or a
        mapping name -> array ``[*sample_axes, ...]`` (numpy, memory-mapped or jax).
      names: the arrays to put in each batch.
      batch_size: samples per batch.
      seed: base seed; epoch e is shuffled by ``numpy.random.default_rng(seed + e)``.
      split: ``"train"`` or ``"test"`` when `source` is a `Dataset`.
      stats: name -> ``{"mean", "std"}``; required for a plain mapping.
      drop_remainder: skip each epoch's last partial batch (every batch then has `batch_size`).
      sample_axes: number of leading axes that index samples, merged into one (e.g. 2 for
        ``[trajectories, time, n, n]``).
      dtype: dtype of the batches.
      sharding: if given, each batch array is placed with ``jax.device_put(x, sharding)`` (e.g.
        a ``NamedSharding`` over a ``("data",)`` mesh axis); otherwise on the default device.

    A batch is a dict name -> ``jax.Array [batch_size, *item_shape]``.
    """

    def __init__(
        self,
        source: Dataset | Mapping[str, Any],
        names: Sequence[str],
        batch_size: int,
        seed: int,
        *,
        split: str = "train",
        stats: Stats | None = None,
        drop_remainder: bool = True,
        sample_axes: int = 1,
        dtype: Any = np.float32,
        sharding: jax.sharding.Sharding | None = None,
    ) -> None:
        if isinstance(source, Dataset):
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; allowed: {SPLITS}")
            arrays = source.arrays(split)
            stats = source.stats if stats is None else stats
        elif isinstance(source, Mapping):
            arrays = source
            if stats is None:
                raise ValueError(
                    "stats are required for a plain mapping of arrays "
                    "(use compute_stats on the training arrays)"
                )
        else:
            raise TypeError(f"source must be a Dataset or a mapping, got {type(source).__name__}")
        if isinstance(names, str) or not names:
            raise ValueError(f"names must be a non-empty sequence of array names, got {names!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if not isinstance(sample_axes, int) or sample_axes < 1:
            raise ValueError(f"sample_axes must be an int >= 1, got {sample_axes!r}")

        self._arrays: dict[str, np.ndarray] = {}
        self._stats: dict[str, tuple[float, float]] = {}
        lead: tuple[int, ...] | None = None
        for name in names:
            if name not in arrays:
                raise KeyError(f"no array {name!r}; available: {sorted(arrays)}")
            if name not in stats:
                raise KeyError(
                    f"no stats for {name!r}; available: {sorted(stats)} (a test-only dataset has "
                    "none: pass stats= from the training dataset)"
                )
            array = arrays[name]
            if not isinstance(array, np.ndarray):
                array = np.asarray(array)
            if array.ndim < sample_axes:
                raise ValueError(
                    f"array {name!r} has shape {array.shape}: fewer than sample_axes={sample_axes}"
                )
            if lead is None:
                lead = array.shape[:sample_axes]
            elif array.shape[:sample_axes] != lead:
                raise ValueError(
                    f"array {name!r} has sample axes {array.shape[:sample_axes]}, "
                    f"expected {lead} like {names[0]!r}"
                )
            self._arrays[name] = array.reshape(-1, *array.shape[sample_axes:])
            self._stats[name] = _check_stat(name, stats[name])
        self._num_samples = int(np.prod(lead))
        self._batch_size = batch_size
        self._seed = seed
        self._drop_remainder = drop_remainder
        self._dtype = np.dtype(dtype)
        self._sharding = sharding
        if drop_remainder:
            self._steps_per_epoch = self._num_samples // batch_size
        else:
            self._steps_per_epoch = -(-self._num_samples // batch_size)
        if self._steps_per_epoch == 0:
            raise ValueError(
                f"batch_size={batch_size} exceeds the {self._num_samples} samples with "
                "drop_remainder=True: an epoch would hold no batch"
            )
        self._cached_epoch: tuple[int, np.ndarray] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The arrays in each batch."""
        return tuple(self._arrays)

    @property
    def num_samples(self) -> int:
        """Samples in the split (after merging the sample axes)."""
        return self._num_samples

    @property
    def batch_size(self) -> int:
        """Samples per (full) batch."""
        return self._batch_size

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch."""
        return self._steps_per_epoch

    @property
    def stats(self) -> dict[str, dict[str, float]]:
        """name -> ``{"mean", "std"}`` used to normalise."""
        return {n: {"mean": m, "std": s} for n, (m, s) in self._stats.items()}

    def epoch_permutation(self, epoch: int) -> np.ndarray:
        """The sample order of `epoch`: ``default_rng(seed + epoch).permutation(num_samples)``."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self._cached_epoch is None or self._cached_epoch[0] != epoch:
            perm = np.random.default_rng(self._seed + epoch).permutation(self._num_samples)
            self._cached_epoch = (epoch, perm)
        return self._cached_epoch[1]

    def indices_at(self, step: int) -> np.ndarray:
        """Sample indices ``[batch]`` of global step `step` (in batch order)."""
        if not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        epoch, j = divmod(int(step), self._steps_per_epoch)
        perm = self.epoch_permutation(epoch)
        return perm[j * self._batch_size : (j + 1) * self._batch_size]

    def raw_batch_at(self, step: int) -> dict[str, np.ndarray]:
        """Un-normalised host batch of step `step`: name -> ``[batch, *item_shape]``."""
        idx = self.indices_at(step)
        order = np.argsort(idx, kind="stable")  # read in ascending order (memory-mapped files)
        out = {}
        for name, array in self._arrays.items():
            rows = array[idx[order]]
            batch = np.empty_like(rows)
            batch[order] = rows
            out[name] = batch
        return out

    def batch_at(self, step: int) -> dict[str, jax.Array]:
        """Normalised batch of global step `step`: name -> ``jax.Array [batch, *item_shape]``."""
        out = {}
        for name, raw in self.raw_batch_at(step).items():
            mean, std = self._stats[name]
            x = ((raw.astype(np.float64) - mean) / std).astype(self._dtype)
            out[name] = (
                jnp.asarray(x) if self._sharding is None else jax.device_put(x, self._sharding)
            )
        return out

    def iterate(
        self, start_step: int = 0, num_steps: int | None = None
    ) -> Iterator[dict[str, jax.Array]]:
        """Batches of steps ``start_step, start_step + 1, ...``: `num_steps` of them, or forever."""
        if not isinstance(start_step, int) or start_step < 0:
            raise ValueError(f"start_step must be an int >= 0, got {start_step!r}")
        if num_steps is not None and (not isinstance(num_steps, int) or num_steps < 0):
            raise ValueError(f"num_steps must be None or an int >= 0, got {num_steps!r}")
        step = start_step
        while num_steps is None or step < start_step + num_steps:
            yield self.batch_at(step)
            step += 1

    def __iter__(self) -> Iterator[dict[str, jax.Array]]:
        return self.iterate(0)

    def denormalise(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Inverse of the normalisation for a batch (or model outputs) keyed by array name."""
        return {name: denormalise(x, self.stats[name]) for name, x in batch.items()}


PREVIOUS_TARGET = "previous_target"
"""Derived condition: the closure target one snapshot earlier in the same trajectory (after
arXiv 2408.02965: the score network may condition on the previous closure sample, as the online
solver has it)."""


def trajectory_fields(
    data: Any, split: str, names: Sequence[str], suffix: str = ""
) -> dict[str, np.ndarray]:
    """Arrays `[trajectories, snapshots, ...]` of `names` from a dataset split, with the derived
    `PREVIOUS_TARGET` when asked for: every other array then drops its first snapshot and
    `previous_target[:, j] = target[:, j]` of the snapshot before (memory-mapped views, no copy).
    `suffix` selects the zero-shot arrays (`omega_128`, …)."""
    arrays = data.arrays(split) if hasattr(data, "arrays") else data
    derived = PREVIOUS_TARGET in names
    out: dict[str, np.ndarray] = {}
    for name in names:
        source = "target" if name == PREVIOUS_TARGET else name
        if source + suffix not in arrays:
            raise ValueError(f"dataset split '{split}' has no array '{source + suffix}'")
        a = arrays[source + suffix]
        if derived:
            a = a[:, :-1] if name == PREVIOUS_TARGET else a[:, 1:]
        out[name] = a
    return out
