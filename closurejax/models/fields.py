"""What every closure model does to its input and output fields: standardise them with the
training split's statistics, check the condition fields it is given, and run its network on
batch slices.

Every closure model (`closurejax.diffusion.conditional.ClosureModel`, the P-CDM;
`closurejax.models.regression.RegressionModel`, its deterministic baseline;
`closurejax.diffusion.latent_model.LatentDiffusionModel`, paper B's L-CDM) keeps a `Stats`
mapping `{name: {"mean", "std"}}` of the training split (`closurejax.data.store`) and conditions
on `[batch, n, n]` fields by name; these functions are their one implementation, and
`FieldModel` the part the two FNO models share.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax

from closurejax.data.pipeline import PREVIOUS_TARGET
from closurejax.models import chunking, fno

__all__ = [
    "FieldModel",
    "Stats",
    "check_conditions",
    "denormalise",
    "normalise",
    "scale",
    "with_previous_target",
]

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


def with_previous_target(stats: Stats) -> Stats:
    """`stats` with the derived previous-snapshot condition (`PREVIOUS_TARGET`), which shares the
    target's scale, when the target has statistics."""
    if "target" in stats:
        return {**stats, PREVIOUS_TARGET: stats["target"]}
    return stats


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class FieldModel:
    """A network on `[B, n, n]` fields with its training statistics: the FNO closure models'
    common part (`ClosureModel`, `RegressionModel`).

    Attributes:
      network: the Flax module (`fno.ConditionalFNO` or `fno.DeterministicFNO`).
      condition_names: dataset arrays conditioned on, in order.
      stats: name → {"mean", "std"} of the training split (conditions and "target").
      normalize_target: work on the standardised target instead of the physical one.
      batch_chunk: samples per slice of every network evaluation ("auto", an int, or None;
        `closurejax.models.chunking`).
      remat_slices: recompute each slice's forward in the backward pass of a training loss
        instead of storing its activations (`chunking.map_batch`); not a config field: it
        changes no number, only the speed (the benchmark's `no_remat_seconds` row turns it off).
    """

    network: nn.Module
    condition_names: tuple[str, ...]
    stats: Stats
    normalize_target: bool = False
    batch_chunk: chunking.ChunkSetting = "auto"
    remat_slices: bool = True

    def __post_init__(self) -> None:
        chunking.check_chunk(self.batch_chunk, "model.batch_chunk")
        missing = [n for n in (*self.condition_names, "target") if n not in self.stats]
        if missing:
            raise ValueError(f"normalisation statistics missing for {missing}")

    def _scale(self, name: str) -> tuple[float, float]:
        if name == "target" and not self.normalize_target:
            return 0.0, 1.0
        return scale(self.stats, name)

    def normalise(self, name: str, field: jax.Array) -> jax.Array:
        """`(field − mean) / std` of `name` (the target: unchanged unless `normalize_target`)."""
        return normalise(field, *self._scale(name))

    def denormalise(self, name: str, field: jax.Array) -> jax.Array:
        """Inverse of `normalise`."""
        return denormalise(field, *self._scale(name))

    def check_conditions(self, cond: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The conditions in model order (`check_conditions`)."""
        return check_conditions(cond, self.condition_names)

    def chunk_size(self, n: int) -> int | None:
        """Samples per inference slice on an `n`² grid (`None`: the whole batch at once)."""
        return chunking.resolve_chunk(self.batch_chunk, 4 * self.network.width * n * n)

    def _map(self, fn: Any, params: Any, *args: Any, fold: bool = True) -> Any:
        """`fn(params, *args)` on batch slices (`chunk_size` of the grid of the first field);
        with `fold`, a vmap over the args folds into the batch (`chunking.fold_vmap`; no
        reverse-mode AD, so the losses pass `fold=False`)."""
        chunk = self.chunk_size(jax.tree.leaves(args)[0].shape[-1])

        def run(p: Any, *a: Any) -> Any:
            return chunking.map_batch(functools.partial(fn, p), chunk, *a, remat=self.remat_slices)

        return (chunking.fold_vmap(run) if fold else run)(params, *args)
