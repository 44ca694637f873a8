"""Benchmark records and the benchmark file (no physics needed)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jax
import pytest

from closurejax.benchmarks import records as bench


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
