"""What every closure model does to its input and output fields: standardise them with the
training split's statistics, and check the condition fields it is given.

Both model kinds (`conditional.ClosureModel`, the P-CDM and its regression baseline, and
`latent_model.LatentDiffusionModel`, paper B's L-CDM) keep a `Stats` mapping
`{name: {"mean", "std"}}` of the training split (`closurejax.data.store`), and condition on
`[batch, n, n]` fields by name; these functions are their one implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax

from closurejax.models import fno

__all__ = ["Stats", "check_conditions", "denormalise", "normalise", "scale"]

Stats = Mapping[str, Mapping[str, float]]
"""Training-split statistics, `{field name: {"mean": float, "std": float}}`."""


def scale(stats: Stats, name: str) -> tuple[float, float]:
    """`(mean, std)` of field `name`; a one-line error naming the fields that have statistics."""
    if name not in stats:
        raise ValueError(f"field name {name!r} has no statistics; fields: {sorted(stats)}")
    s = stats[name]
    return float(s["mean"]), float(s["std"])


def normalise(field: jax.Array, mean: float, std: float) -> jax.Array:
    """`(field − mean) / std`."""
    return (field - mean) / std


def denormalise(field: jax.Array, mean: float, std: float) -> jax.Array:
    """`field · std + mean` (inverse of `normalise`)."""
    return field * std + mean


def check_conditions(cond: Any, names: Sequence[str]) -> dict[str, jax.Array]:
    """The condition fields `names` of `cond`, in that order, each `[batch ≥ 1, n, n]`, all of
    one shape and finite (checked on concrete arrays only); a one-line ValueError otherwise."""
    if not isinstance(cond, Mapping):
        raise ValueError(
            f"cond must be a mapping {{name: [batch, n, n]}} of {list(names)}, got "
            f"{type(cond).__name__}"
        )
    missing = [n for n in names if n not in cond]
    if missing:
        raise ValueError(
            f"missing condition field(s) {missing}; the model conditions on {list(names)}, got "
            f"fields {sorted(cond)}"
        )
    shapes = {n: tuple(cond[n].shape) for n in names}
    first = names[0]
    for name, shape in shapes.items():
        if len(shape) != 3 or shape[0] < 1 or shape[-1] != shape[-2]:
            raise ValueError(f"condition '{name}' must be [batch, n, n], got shape {shape}")
        if shape != shapes[first]:
            raise ValueError(
                f"condition '{name}' has shape {shape} but '{first}' has {shapes[first]}: "
                "all conditions must share one batch size and grid"
            )
        fno.check_finite(f"condition {name!r}", cond[name])
    return {n: cond[n] for n in names}
