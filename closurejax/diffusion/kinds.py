"""The closure-model kinds (`model.kind`): one table of what the library needs to know about each,
the interface every closure model implements, and the one place a model is built from a config.

* "score" — `ClosureModel`, the P-CDM (arXiv 2408.02965; arXiv 2506.20771's physical-space
  model): draws samples; online source "diffusion"; an FNO, so any grid with n ≥ 2·modes.
* "regression" — `RegressionModel` (`closurejax.models.regression`), the deterministic FNO,
  MSE-trained (arXiv 2408.02965's baseline): predicts one closure; online source "regression";
  any grid with n ≥ 2·modes.
* "latent" — `LatentDiffusionModel`, the L-CDM (arXiv 2506.20771): draws samples; online
  source "latent"; tied to its training grid by its autoencoders.

Adding a kind means one row here (its `Kind`) and its model class; the training runs, the online
sources (`closurejax.simulation.sources`), the checkpoint checks and the frontier read this table
instead of comparing kind strings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import jax

from closurejax.config_section import as_dict
from closurejax.diffusion import conditional, latent_model
from closurejax.models import fields, regression

Stats = fields.Stats


@runtime_checkable
class ClosureModelProtocol(Protocol):
    """What every closure model offers (fields in physical units, `[B, n, n]`).

    * `kind`: its row of `KINDS`; `condition_names`: the dataset arrays it conditions on;
    * `init(key, n)`: parameters for an `n`² grid;
    * `loss(params, batch, key) -> (loss, metrics)`: the training loss of a batch of physical
      fields keyed by dataset array names (the conditions and "target");
    * `normalise(name, field)` / `denormalise(name, field)`: the training statistics' scaling;
    * `check_conditions(cond)`: the conditions in model order, refusing missing or misshapen ones;
    * `chunk_size(n)`: samples per inference slice on an `n`² grid;
    * kinds that draw samples (`Kind.samples`) add `sample(params, key, cond, sampler)`, the
      deterministic one `predict(params, cond)`.
    """

    kind: str
    condition_names: tuple[str, ...]

    def init(self, key: jax.Array, n: int) -> Any: ...

    def loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    def normalise(self, name: str, field: jax.Array) -> jax.Array: ...

    def denormalise(self, name: str, field: jax.Array) -> jax.Array: ...

    def check_conditions(self, cond: Mapping[str, jax.Array]) -> dict[str, jax.Array]: ...

    def chunk_size(self, n: int) -> int | None: ...


Model = conditional.ClosureModel | regression.RegressionModel | latent_model.LatentDiffusionModel
"""The closure model classes (`ClosureModelProtocol`)."""


@dataclasses.dataclass(frozen=True)
class Kind:
    """One closure-model kind (module docstring).

    Attributes:
      name: the `model.kind` value.
      source: the online closure source that runs a trained model of this kind.
      samples: draws closure samples (`sample`, a diffusion model with an SDE and a sampler)
        rather than predicting one closure (`predict`).
      grid_bound: its parameters hold only on the grid it was trained on (the latent model's
        autoencoders); an FNO serves any grid with at least 2·modes points per axis.
      sections: config sections besides `model` and `diffusion` that define the model.
      build: `(study config, dataset statistics) -> model`.
    """

    name: str
    source: str
    samples: bool
    grid_bound: bool
    sections: tuple[str, ...]
    build: Callable[[Mapping[str, Any], Stats], Any]


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("score", "diffusion", True, False, (), conditional.from_config),
        Kind("regression", "regression", False, False, (), regression.from_config),
        Kind(latent_model.KIND, "latent", True, True, ("latent",), latent_model.from_config),
    )
}
"""`model.kind` → its `Kind`."""

NAMES = tuple(KINDS)
"""Every `model.kind`."""

SAMPLING = tuple(name for name, kind in KINDS.items() if kind.samples)
"""The kinds that draw closure samples."""

BY_SOURCE: Mapping[str, str] = {kind.source: name for name, kind in KINDS.items()}
"""Online source name → the `model.kind` of the training run it loads."""


def get(name: Any) -> Kind:
    """The `Kind` of `model.kind == name`; refuses another value in one line listing them."""
    if not isinstance(name, str) or name not in KINDS:
        raise ValueError(f"model.kind={name!r} is invalid; allowed: {NAMES}")
    return KINDS[name]


def from_config(config: Mapping[str, Any], stats: Stats) -> Model:
    """The closure model of a study config (any `model.kind`) with the dataset's statistics."""
    config = as_dict(config)
    return get(config["model"]["kind"]).build(config, stats)
