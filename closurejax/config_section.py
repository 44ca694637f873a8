"""Building validated frozen dataclasses from config sections (ml_collections or dicts)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_section(cls: type[T], config: Mapping[str, Any], section: str) -> T:
    """`cls(**config)` after refusing fields `cls` does not have, naming them and the section.

    Missing fields take the dataclass defaults; each dataclass validates its own values.
    """
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(config.keys()) - known)
    if unknown:
        raise ValueError(f"unknown {section} config fields {unknown}; known: {sorted(known)}")
    return cls(**{k: config[k] for k in config.keys()})


def as_dict(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` as a plain dict the caller may change: `ConfigDict.to_dict()`, or a deep copy of
    any other mapping (the caller's config is never changed through it)."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return copy.deepcopy(dict(config))


def invalid(section: str, field: str, value: Any, allowed: str) -> ValueError:
    """The error for a bad config value: "section.field=value is invalid; allowed: …"."""
    return ValueError(f"{section}.{field}={value!r} is invalid; allowed: {allowed}")
