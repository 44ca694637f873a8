"""The deterministic closure baseline: an FNO trained by mean squared error to predict the
closure from its conditions, U ≈ f(y) (the regression baseline of arXiv 2408.02965, with the
score network's backbone and no noise level; `fno.DeterministicFNO`).

`RegressionModel` is the `kind = "regression"` row of `closurejax.diffusion.kinds`: it predicts
one closure (`predict`) where the diffusion models draw samples. Fields enter and leave in
physical units `[B, n, n]`; conditions (and, with `normalize_target`, the target) are
standardised with the training statistics (`closurejax.models.fields`), and every network
evaluation runs on batch slices of `batch_chunk` samples like the P-CDM's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from closurejax.models import chunking, fields, fno

__all__ = ["RegressionModel", "from_config"]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class RegressionModel(fields.FieldModel):
    """The regression baseline (module docstring); `network` is a `fno.DeterministicFNO`."""

    kind: ClassVar[str] = "regression"

    def init(self, key: jax.Array, n: int, batch: int = 1) -> Any:
        """Parameters for `[batch, n, n]` fields (the same parameters serve any grid ≥ 2·modes)."""
        cond = {name: jnp.zeros((batch, n, n)) for name in self.condition_names}
        return self.network.init(key, cond)

    def predict(self, params: Any, cond: Mapping[str, jax.Array]) -> jax.Array:
        """The predicted closure `[B, n, n]` in physical units (jit/vmap-able)."""
        cond = self.check_conditions(cond)
        normalised = {n: self.normalise(n, v) for n, v in cond.items()}
        return self.denormalise("target", self._map(self.network.apply, params, normalised))

    def loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean over the batch of the squared error summed over the grid, of a batch of PHYSICAL
        fields (conditions and "target"); `key` is unused (the loss is deterministic)."""
        del key
        target = self.normalise("target", batch["target"])
        cond = {n: self.normalise(n, batch[n]) for n in self.condition_names}
        pred = self._map(self.network.apply, params, cond, fold=False)
        per_sample = jnp.sum((pred - target) ** 2, axis=(-2, -1))
        return jnp.mean(per_sample), {}


def from_config(config: Mapping[str, Any], stats: fields.Stats) -> RegressionModel:
    """The regression baseline of a study config (section `model`; `diffusion.normalize_target`
    when present) and the training statistics."""
    model = config["model"]
    if model["kind"] != RegressionModel.kind:
        raise ValueError(
            f"model.kind={model['kind']!r}: regression.from_config builds kind "
            f"{RegressionModel.kind!r} (closurejax.diffusion.kinds.from_config builds every kind)"
        )
    settings = fno.settings_from_config(model)
    return RegressionModel(
        network=fno.DeterministicFNO(**settings),
        condition_names=settings["condition_names"],
        stats=fields.with_previous_target(stats),
        normalize_target=bool(config.get("diffusion", {}).get("normalize_target", False)),
        batch_chunk=chunking.check_chunk(model.get("batch_chunk", "auto"), "model.batch_chunk"),
    )
