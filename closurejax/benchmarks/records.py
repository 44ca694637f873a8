"""Benchmark records and the benchmark file: `BenchRecord`, `record`, `write_records`,
`load_records`, `format_table`, and the types every benchmark group shares (`Group`, `Configs`).

Every benchmark group (solver, score, samplers, latent, coupled) produces a list of `BenchRecord`
and appends it to one JSON file (`bench.json`: a list of records, sorted by name) with
`write_records`, which replaces only the rows of the groups being re-run, so
`make bench ONLY=solver` refreshes the solver rows and keeps the others. Record names are
`group/…/metric`, e.g. `solver/cn_rk4/n256/b16/floor_ratio`.

A group is a function `group(quick, configs) -> list[BenchRecord]` (`Group`). The study configs a
group measures are passed in by its caller (`Configs`: by name, e.g. "paper_b"; each module's
`CONFIGS` names those of its groups; experiments/benchmark.py builds them from
`experiments/configs/<name>.py`): the library does not import `experiments/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from closurejax import atomic
from closurejax.config_section import as_dict

__all__ = [
    "BenchRecord",
    "Configs",
    "Group",
    "study_config",
    "device_description",
    "record",
    "load_records",
    "write_records",
    "format_table",
]

Configs = Mapping[str, Any]
"""The study configs a benchmark group measures, by name (the study's file name in
experiments/configs, e.g. "paper_b"): `ml_collections.ConfigDict`s or nested mappings."""

Group = Callable[[bool, Configs], "list[BenchRecord]"]
"""A benchmark group: `group(quick, configs)`; `quick`: tiny sizes for tests."""


@dataclasses.dataclass(frozen=True)
class BenchRecord:
    """One measured number.

    Attributes:
      name: `group/…/metric`, unique within a benchmark file; the leading `group/` decides which
        rows a re-run of that group replaces.
      value: the measurement (NaN if it could not be measured; stored as JSON null then).
      unit: e.g. "steps/s", "s", "ratio".
      target: the value to meet, or None when there is none.
      meets_target: whether `value` meets `target` (None when there is no target).
      device: `device_description()` of the machine that measured it.
      config: what was measured (sizes, batch, dtype, …); JSON-serialisable.
    """

    name: str
    value: float
    unit: str
    target: float | None
    meets_target: bool | None
    device: str
    config: dict

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (non-finite values become null: JSON has no NaN)."""
        value = float(self.value)
        return {
            "name": self.name,
            "value": value if math.isfinite(value) else None,
            "unit": self.unit,
            "target": None if self.target is None else float(self.target),
            "meets_target": self.meets_target,
            "device": self.device,
            "config": dict(self.config),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BenchRecord:
        """Inverse of `to_json`; raises KeyError/TypeError on a malformed record."""
        value = obj["value"]
        target = obj["target"]
        return cls(
            name=str(obj["name"]),
            value=math.nan if value is None else float(value),
            unit=str(obj["unit"]),
            target=None if target is None else float(target),
            meets_target=obj["meets_target"],
            device=str(obj["device"]),
            config=dict(obj["config"]),
        )


def study_config(configs: Configs, name: str) -> dict[str, Any]:
    """A deep plain-dict copy of the study config `name` in `configs` (a group may change it);
    `ValueError` naming it and the given ones when it is absent."""
    if name not in configs:
        raise ValueError(
            f"the benchmark needs the study config {name!r}; given: {sorted(configs)} (the "
            "caller builds it, e.g. experiments/benchmark.py from experiments/configs)"
        )
    config = configs[name]
    return as_dict(config)


def device_description() -> str:
    """E.g. "NVIDIA H100 80GB HBM3 (gpu ×1)" or "cpu (cpu ×1)": kind, platform, device count."""
    devices = jax.devices()
    return f"{devices[0].device_kind} ({devices[0].platform} ×{len(devices)})"


def record(
    name: str,
    value: float,
    unit: str,
    *,
    target: float | None = None,
    lower_is_better: bool = True,
    config: dict[str, Any],
) -> BenchRecord:
    """A `BenchRecord` on this machine's device, with `meets_target` filled in.

    `meets_target` is `value <= target` when `lower_is_better`, else `value >= target`; None
    without a target; False for a NaN value.
    """
    value = float(value)
    if target is None:
        meets = None
    elif math.isnan(value):
        meets = False
    else:
        meets = value <= target if lower_is_better else value >= target
    return BenchRecord(
        name=name,
        value=value,
        unit=unit,
        target=None if target is None else float(target),
        meets_target=meets,
        device=device_description(),
        config=dict(config),
    )


# --- the benchmark file ---------------------------------------------------------------------


def load_records(path: str | os.PathLike) -> list[BenchRecord]:
    """Records of an existing benchmark file (a JSON list of `BenchRecord.to_json()` dicts).

    Raises ValueError naming the file when it is not such a list.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"benchmark file {path} is not valid JSON ({e}); move or delete it, it was not "
            "overwritten"
        ) from e
    if not isinstance(obj, list):
        raise ValueError(
            f"benchmark file {path} holds a JSON {type(obj).__name__}, expected a list of "
            "records; move or delete it, it was not overwritten"
        )
    records = []
    for i, item in enumerate(obj):
        try:
            if not isinstance(item, dict):
                raise TypeError(f"a {type(item).__name__}, not an object")
            records.append(BenchRecord.from_json(item))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"benchmark file {path}: entry {i} is not a benchmark record ({e!r}); move or "
                "delete the file, it was not overwritten"
            ) from e
    return records


def write_records(
    path: str | os.PathLike,
    records: Iterable[BenchRecord],
    replace_prefix: str | tuple[str, ...] | None,
) -> list[BenchRecord]:
    """Merges `records` into the benchmark file at `path` and writes it atomically.

    Existing records whose name starts with `replace_prefix` (a string or a tuple of them: the
    groups being re-run, e.g. "solver/") are dropped, as are existing records with the same name
    as a new one; all other existing records are kept. With `replace_prefix=None` only same-name
    records are replaced. A file that is not a list of records raises ValueError and is left as it
    is. Returns the records written, sorted by name.
    """
    path = Path(path)
    records = list(records)
    names = [r.name for r in records]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate benchmark record names: {duplicates}")
    if replace_prefix is not None:
        outside = [n for n in names if not n.startswith(replace_prefix)]
        if outside:
            raise ValueError(
                f"records {outside} do not start with replace_prefix={replace_prefix!r}; "
                "they would leave stale rows of their own group behind"
            )
    existing = load_records(path) if path.exists() else []
    new_names = set(names)
    kept = [
        r
        for r in existing
        if r.name not in new_names
        and (replace_prefix is None or not r.name.startswith(replace_prefix))
    ]
    merged = sorted(kept + records, key=lambda r: r.name)
    atomic.write_json(path, [r.to_json() for r in merged])
    return merged


def _format_number(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.4g}"


def format_table(records: Sequence[BenchRecord]) -> str:
    """An aligned text table: name, value, unit, target, meets (✓/✗/–), device."""
    header = ("name", "value", "unit", "target", "meets", "device")
    rows = [
        (
            r.name,
            _format_number(r.value),
            r.unit,
            _format_number(r.target),
            {True: "✓", False: "✗", None: "–"}[r.meets_target],
            r.device,
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 3}  # numbers are right-aligned

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
