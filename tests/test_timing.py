"""The timer of the offline cost figure and the benchmarks: `closurejax.timing.time_fn`."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import pytest

from closurejax import timing


def test_time_fn_excludes_warmup() -> None:
    calls = []

    def fn(x: jax.Array) -> jax.Array:
        calls.append(None)
        if len(calls) == 1:
            time.sleep(0.3)  # stands in for compilation
        return x + 1

    x = jnp.ones(3)
    t = timing.time_fn(fn, x, warmup=1, repeats=3)
    assert len(calls) == 4
    assert set(t) == {"min", "median", "mean"}
    assert 0 <= t["min"] <= t["median"] and t["min"] <= t["mean"] < 0.1
    calls.clear()
    t = timing.time_fn(fn, x, warmup=0, repeats=3)  # the slow call is now timed
    assert len(calls) == 3
    assert t["mean"] > 0.09 and t["min"] < 0.1
    with pytest.raises(ValueError, match="repeats"):
        timing.time_fn(fn, x, repeats=0)


def test_time_fn_blocks_on_outputs() -> None:
    class Lazy:
        """An output whose block_until_ready takes time (as an in-flight device array does)."""

        def block_until_ready(self) -> Lazy:
            time.sleep(0.05)
            return self

    t = timing.time_fn(lambda: {"a": [Lazy()]}, warmup=0, repeats=1)
    assert t["min"] >= 0.05
