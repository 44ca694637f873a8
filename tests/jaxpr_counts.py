"""Counting the work in a jaxpr: 2-D real transforms and standard-normal draws (cost tests)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax


def _subjaxprs(params: dict[str, Any]) -> list[Any]:
    out = []
    for value in params.values():
        for item in value if isinstance(value, list | tuple) else [value]:
            inner = getattr(item, "jaxpr", None)
            if inner is not None:
                out.append(getattr(inner, "jaxpr", inner))
    return out


def count_work(fn: Callable[..., Any], *args: Any) -> dict[str, int]:
    """{"forward", "inverse", "normals"} over every equation of `fn`'s jaxpr, sub-jaxprs (cond
    branches, loops' bodies once) included: fields transformed by rfft2 / irfft2 (a stacked call
    over `[k, n, n]` counts k) and normals drawn (elements passed through erf_inv)."""
    counts = {"forward": 0, "inverse": 0, "normals": 0}

    def walk(jaxpr: Any) -> None:
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name == "fft":
                kind = getattr(eqn.params["fft_type"], "name", str(eqn.params["fft_type"]))
                fields = math.prod(eqn.outvars[0].aval.shape[:-2])
                if kind.endswith("IRFFT"):
                    counts["inverse"] += fields
                elif kind.endswith("RFFT"):
                    counts["forward"] += fields
            elif name == "erf_inv":
                counts["normals"] += math.prod(eqn.outvars[0].aval.shape)
            for inner in _subjaxprs(eqn.params):
                walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return counts
