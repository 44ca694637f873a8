"""Wall-clock timing of jitted functions: `time_fn`, used by the offline test's cost figure
(`closurejax.evaluation.offline`) and by every benchmark group (`closurejax.benchmarks`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["time_fn"]


def time_fn(fn: Callable[..., Any], *args: Any, warmup: int = 1, repeats: int = 5) -> dict:
    """Wall-clock seconds of `fn(*args)`, blocking on every output array.

    The first `warmup` calls (which include jit compilation) are made and discarded; then `repeats`
    calls are timed one by one. Returns `{"min", "median", "mean"}` in seconds.
    """
    if warmup < 0:
        raise ValueError(f"time_fn warmup={warmup} must be ≥ 0")
    if repeats < 1:
        raise ValueError(f"time_fn repeats={repeats} must be ≥ 1")
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return {
        "min": min(times),
        "median": statistics.median(times),
        "mean": statistics.fmean(times),
    }
