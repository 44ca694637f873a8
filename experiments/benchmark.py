"""Runs benchmark groups and merges their records into one JSON file (`make bench`).

    python experiments/benchmark.py --output=bench.json [--only=solver] [--quick]

Each group is a library function `(quick, configs) -> list[BenchRecord]`
(closurejax.benchmarks: a module per group); the study configs it measures are built here, from
`experiments/configs/<name>.py` for the names its module's `CONFIGS` gives (the library does not
import experiments/). Re-running some groups replaces only their rows in `--output` and keeps the
others. The table of this run's records is printed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as `python experiments/<launcher>.py`: see experiments/__init__.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import importlib
import os
from collections.abc import Iterable, Sequence

import ml_collections
from absl import flags

from closurejax.benchmarks import coupled, latent, records, samplers, score, solver
from experiments import launch

MODULES = (solver, score, samplers, latent, coupled)
"""The group modules, in the order their groups run."""
GROUPS: dict[str, records.Group] = {name: g for m in MODULES for name, g in m.GROUPS.items()}
CONFIGS: dict[str, tuple[str, ...]] = {
    name: configs for m in MODULES for name, configs in m.CONFIGS.items()
}
"""The study configs each group measures, by name: `experiments/configs/<name>.py`."""

_OUTPUT = flags.DEFINE_string("output", "bench.json", "JSON file the records are merged into.")
_ONLY = flags.DEFINE_list(
    "only", [], f"Comma-separated groups to run (default: all). Groups: {', '.join(GROUPS)}."
)
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes and few steps (for tests).")


def study_configs(groups: Iterable[str]) -> dict[str, ml_collections.ConfigDict]:
    """`{name: experiments.configs.<name>.get_config()}` for every config `groups` need."""
    names = sorted({name for group in groups for name in CONFIGS[group]})
    return {
        name: importlib.import_module(f"experiments.configs.{name}").get_config() for name in names
    }


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; allowed: flags only (--help)")
    selected = list(dict.fromkeys(_ONLY.value)) or list(GROUPS)
    unknown = [g for g in selected if g not in GROUPS]
    if unknown:
        raise ValueError(f"--only: unknown groups {unknown}; allowed: {list(GROUPS)}")
    if os.path.exists(_OUTPUT.value):
        records.load_records(_OUTPUT.value)  # a corrupt file fails now, not after the run
    launch.quiet_library_logs()
    print(f"benchmarking {selected} on {records.device_description()}", flush=True)
    configs = study_configs(selected)
    measured, ran, skipped = [], [], []
    for group in selected:
        print(f"group {group}", flush=True)
        try:
            given = {name: configs[name] for name in CONFIGS[group]}  # only those it declares
            measured += GROUPS[group](_QUICK.value, given)
            ran.append(group)
        except FileNotFoundError as missing:  # a prerequisite (e.g. a trained study) is absent
            skipped.append(f"{group}: {missing}")
    records.write_records(_OUTPUT.value, measured, replace_prefix=tuple(f"{g}/" for g in ran))
    print(records.format_table(measured))
    for line in skipped:
        print(f"skipped {line}")
    print(f"wrote {len(measured)} records to {_OUTPUT.value}")


if __name__ == "__main__":
    launch.run(main)
