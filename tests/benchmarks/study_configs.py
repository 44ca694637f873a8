"""The study configs a benchmark group measures, built as experiments/benchmark.py builds them."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import ml_collections


def study_configs(names: Iterable[str]) -> dict[str, ml_collections.ConfigDict]:
    """`{name: experiments.configs.<name>.get_config()}` for `names` (`CONFIGS[group]`)."""
    return {n: importlib.import_module(f"experiments.configs.{n}").get_config() for n in names}
