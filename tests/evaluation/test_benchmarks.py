"""Benchmark records, the benchmark file, timing and the FFT floor (no physics needed)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.evaluation import benchmarks as bench


def _rec(name: str, value: float = 1.0, target: float | None = None) -> bench.BenchRecord:
    return bench.record(name, value, "s", target=target, config={"name": name})


@pytest.mark.parametrize(
    ("value", "target", "lower_is_better", "meets"),
    [
        (1.0, 1.5, True, True),
        (1.5, 1.5, True, True),
        (2.0, 1.5, True, False),
        (2.0, 1.5, False, True),
        (1.0, 1.5, False, False),
        (1.0, None, True, None),
        (1.0, None, False, None),
        (math.nan, 1.5, True, False),
        (math.nan, 1.5, False, False),
    ],
)
def test_record_meets_target(
    value: float, target: float | None, lower_is_better: bool, meets: bool | None
) -> None:
    r = bench.record(
        "g/x", value, "ratio", target=target, lower_is_better=lower_is_better, config={"n": 1}
    )
    assert r.meets_target is meets
    assert r.device == bench.device_description()
    assert jax.devices()[0].platform in r.device
    assert r.config == {"n": 1}


def test_to_json_round_trip_and_nan() -> None:
    r = _rec("g/a", 2.5, target=3.0)
    assert bench.BenchRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    nan = _rec("g/nan", math.nan)
    text = json.dumps(nan.to_json(), allow_nan=False)  # strict JSON: no NaN literal
    assert math.isnan(bench.BenchRecord.from_json(json.loads(text)).value)


def test_write_records_replaces_only_prefix(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    bench.write_records(
        path, [_rec("solver/a", 1.0), _rec("solver/b", 2.0)], replace_prefix="solver/"
    )
    bench.write_records(path, [_rec("sampler/a", 3.0), _rec("solver2/x", 4.0)], replace_prefix=None)
    # Re-running "solver" drops its stale row "solver/b", keeps "solver2/x" (another group).
    written = bench.write_records(path, [_rec("solver/a", 10.0)], replace_prefix="solver/")
    on_disk = bench.load_records(path)
    assert on_disk == written
    assert {r.name: r.value for r in on_disk} == {
        "sampler/a": 3.0,
        "solver/a": 10.0,
        "solver2/x": 4.0,
    }
    assert [r.name for r in on_disk] == sorted(r.name for r in on_disk)
    # Several groups at once; replace_prefix=None upserts by name only.
    bench.write_records(path, [_rec("sampler/a", 5.0)], replace_prefix=None)
    assert {r.name: r.value for r in bench.load_records(path)}["sampler/a"] == 5.0
    bench.write_records(path, [], replace_prefix=("solver/", "sampler/"))
    assert [r.name for r in bench.load_records(path)] == ["solver2/x"]


def test_write_records_rejects_bad_new_records(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    with pytest.raises(ValueError, match="duplicate"):
        bench.write_records(path, [_rec("solver/a"), _rec("solver/a")], replace_prefix=None)
    with pytest.raises(ValueError, match="replace_prefix"):
        bench.write_records(path, [_rec("other/a")], replace_prefix="solver/")
    assert not path.exists()


@pytest.mark.parametrize(
    "content",
    ['[{"name": "solver/a", "value": 1', '{"name": "x"}', '[{"name": "solver/a"}]', "[1, 2]"],
)
def test_corrupt_file_raises_and_is_untouched(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bench.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        bench.write_records(path, [_rec("solver/a")], replace_prefix="solver/")
    assert path.read_text() == content
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary file left


def test_format_table() -> None:
    records = [
        _rec("solver/cn_rk4/n256/b16/floor_ratio", 1.2, target=1.5),
        _rec("solver/cn_rk4/n256/b1/floor_ratio", 2.0, target=1.5),
        _rec("solver/semi_implicit/n64/b1/steps_per_s", 1234.5678),
    ]
    table = bench.format_table(records)
    lines = table.splitlines()
    assert len(lines) == 2 + len(records)
    for r, line in zip(records, lines[2:], strict=True):
        assert line.startswith(r.name)
        assert r.device in line
    assert "✓" in lines[2] and "✗" in lines[3] and "–" in lines[4]
    assert "1235" in lines[4]
    # Aligned: every value ends where the (right-aligned) header "value" ends.
    end = lines[0].index("value") + len("value")
    for line, cell in zip(lines[2:], ["1.2", "2", "1235"], strict=True):
        assert line[:end].endswith(" " + cell) and line[end] == " "


def test_time_fn_excludes_warmup() -> None:
    calls = []

    def fn(x: jax.Array) -> jax.Array:
        calls.append(None)
        if len(calls) == 1:
            time.sleep(0.3)  # stands in for compilation
        return x + 1

    x = jnp.ones(3)
    t = bench.time_fn(fn, x, warmup=1, repeats=3)
    assert len(calls) == 4
    assert set(t) == {"min", "median", "mean"}
    assert 0 <= t["min"] <= t["median"] and t["min"] <= t["mean"] < 0.1
    calls.clear()
    t = bench.time_fn(fn, x, warmup=0, repeats=3)  # the slow call is now timed
    assert len(calls) == 3
    assert t["mean"] > 0.09 and t["min"] < 0.1
    with pytest.raises(ValueError, match="repeats"):
        bench.time_fn(fn, x, repeats=0)


def test_time_fn_blocks_on_outputs() -> None:
    class Lazy:
        """An output whose block_until_ready takes time (as an in-flight device array does)."""

        def block_until_ready(self) -> Lazy:
            time.sleep(0.05)
            return self

    t = bench.time_fn(lambda: {"a": [Lazy()]}, warmup=0, repeats=1)
    assert t["min"] >= 0.05


def _fft_ops(f: Callable[..., Any], *args: Any) -> list[str]:
    """Shapes of the fft ops in the optimised HLO of jitted `f` at `args`."""
    text = f.lower(*args).compile().as_text()
    return re.findall(r"= (\S+?)\{[^}]*\} fft\(", text)


@pytest.mark.parametrize(("n_forward", "n_inverse"), [(1, 4), (3, 2), (2, 0), (0, 3)])
def test_fft_chain_keeps_every_transform(n_forward: int, n_inverse: int) -> None:
    shape = (2, 8, 8)
    r = jax.random.normal(jax.random.key(0), shape)
    c = jnp.fft.rfft2(r)
    separate = bench.make_fft_chain(shape, n_forward, n_inverse, steps=3, stack=False)
    ops = _fft_ops(separate, r, c)
    assert ops.count("c64[2,8,5]") == n_forward
    assert ops.count("f32[2,8,8]") == n_inverse
    # Stacked: runs of same-direction transforms share a call over an axis [2, k, 8, ·].
    stacked = bench.make_fft_chain(shape, n_forward, n_inverse, steps=3, stack=True)
    ops = _fft_ops(stacked, r, c)
    per_call = [int(o.split(",")[1]) if o.count(",") == 3 else 1 for o in ops]
    assert sum(per_call) == n_forward + n_inverse
    assert sum(k for o, k in zip(ops, per_call, strict=True) if o.startswith("c64")) == n_forward
    # Values stay O(1) (no overflow or underflow to change the FFT's cost).
    for f in (separate, stacked):
        out_r, out_c = f(r, c)
        assert 0.1 < float(jnp.std(out_r)) < 10
        assert np.isfinite(np.asarray(out_c)).all()


def test_fft_floor_validates_and_times() -> None:
    t = bench.fft_floor((1, 8, 8), 3, repeats=2)
    assert 0 < t < 5
    with pytest.raises(ValueError, match="count"):
        bench.fft_floor((8, 8), 3, n_forward=1, n_inverse=1)
    with pytest.raises(ValueError, match="two axes"):
        bench.fft_floor((8,), 2)
    with pytest.raises(ValueError, match="dtype"):
        bench.fft_floor((8, 8), 2, jnp.int32)
    # draws alone are a floor too; no work at all, or a negative count, is refused
    assert 0 < bench.fft_floor((2, 8, 8), n_forward=0, n_inverse=0, normals=64, repeats=2) < 5
    with pytest.raises(ValueError, match="positive sum"):
        bench.fft_floor((8, 8), n_forward=0, n_inverse=0)
    with pytest.raises(ValueError, match="normals"):
        bench.fft_floor((8, 8), 2, normals=-1)


def test_floor_chain_draws_fresh_normals_every_iteration() -> None:
    """The draws reach the result (no DCE) and differ between iterations (no CSE): each is
    averaged into a carried array d ← (d + z)/2, whose entries end up N(0, 1/3) (geometric sum of
    fresh draws; a repeated draw would give variance 1), and r carries 1e-9 × the sum of d."""
    shape = (64, 8, 8)
    r = jnp.zeros(shape)
    c = jnp.fft.rfft2(r)
    steps, normals = 50, 3000
    out_r, _ = bench.make_fft_chain(shape, 0, 0, steps, normals=normals)(r, c)
    sums = np.asarray(out_r[:, 0, 0], np.float64) / 1e-9  # per field: sum of d, N(0, normals/3)
    assert len(set(np.round(sums, 3))) == 64  # each field its own draws
    # std √1000 ≈ 31.6 from fresh draws (√3000 ≈ 54.8 if one draw were reused); 64 samples
    assert 24 < np.std(sums) < 40 and abs(np.mean(sums)) < 15
    text = str(jax.make_jaxpr(bench.make_fft_chain(shape, 0, 0, steps, normals=normals))(r, c))
    assert "random_bits" in text or "threefry" in text
