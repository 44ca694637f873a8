"""Conditional closure models: U ~ p(U | y) in physical space (arXiv 2408.02965; the P-CDM of
arXiv 2506.20771).

A `ClosureModel` bundles the network (the conditional FNO score network, or the deterministic FNO
baseline), the SDE and the output parameterisation, and the normalisation of the fields. It
exposes the pure functions the rest of the library closes over:

* `sample(params, key, cond, sampler) -> U [B, n, n]`: encodes the condition ONCE (the condition
  branches do not depend on the noise level; the papers' code recomputes them at every sampler
  step), runs any sampler of `closurejax.diffusion.samplers` with the target branch
  only, and returns the closure in physical units;
* `predict(params, cond) -> U` for the regression baseline;
* `loss(params, batch, key)` for training (denoising score matching with λ(t) = σ(t)², or MSE).

Every network evaluation (`encode`, each score evaluation, `predict`, `forward`, and so `loss`)
runs on slices of `batch_chunk` samples in one `lax.map` loop (`closurejax.models.chunking`): on
a CPU this keeps the activations in cache — the P-CDM forward at batch 100 drops from 0.61 s to
0.39 s and a training step of paper A's model at batch 200 from 8.2 s to 4.9 s; "auto" chunks on
a single CPU device only. Under `jax.vmap` (online ensembles call `sample` per member) the
inference paths fold the mapped axis into the network's batch (`chunking.fold_vmap`), so a vmapped
call runs the network exactly like one batched call.

Fields enter in physical units `[B, n, n]` keyed by dataset array names; conditions are normalised
with the training statistics. The target is kept in physical units by default, as in the papers:
their sampler starts at σ(t_max) = 0.375 (σ = 26, t_max = 0.1), which is "pure noise" only
relative to the small physical closure (std ≈ 0.05 for H). `normalize_target=True` trains on the
standardised target instead; then choose t_max with σ(t_max) ≫ 1.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from closurejax.config_section import invalid
from closurejax.data.pipeline import PREVIOUS_TARGET
from closurejax.diffusion import fields, losses, samplers
from closurejax.diffusion import sde as sde_lib
from closurejax.models import chunking, fno

KINDS = ("score", "regression")
Stats = fields.Stats


@dataclasses.dataclass(frozen=True, eq=False)
class ClosureModel:
    """A conditional closure model; see the module docstring.

    Attributes:
      network: `fno.ConditionalFNO` (kind "score") or `fno.DeterministicFNO` ("regression").
      kind: one of KINDS.
      sde: forward SDE (score models).
      parameterization: "score_over_sigma" (papers) or "edm".
      sigma_data: EDM's data std (in the units the diffusion runs in).
      condition_names: dataset arrays conditioned on, in order.
      stats: name → {"mean", "std"} of the training split (conditions and "target").
      normalize_target: diffuse the standardised target instead of the physical one.
      train_times: (t_min, t_max) of the uniform training-time distribution.
      batch_chunk: samples per slice of every network evaluation ("auto", an int, or None).
    """

    network: nn.Module
    kind: str
    sde: Any
    parameterization: str
    sigma_data: float
    condition_names: tuple[str, ...]
    stats: Stats
    normalize_target: bool
    train_times: tuple[float, float]
    batch_chunk: chunking.ChunkSetting = "auto"

    def __post_init__(self) -> None:
        chunking.check_chunk(self.batch_chunk, "model.batch_chunk")
        if self.kind not in KINDS:
            raise ValueError(f"model.kind={self.kind!r} is invalid; allowed: {KINDS}")
        missing = [n for n in (*self.condition_names, "target") if n not in self.stats]
        if missing:
            raise ValueError(f"normalisation statistics missing for {missing}")

    # --- normalisation ---------------------------------------------------------------------

    def _scale(self, name: str) -> tuple[float, float]:
        if name == "target" and not self.normalize_target:
            return 0.0, 1.0
        return fields.scale(self.stats, name)

    def normalise(self, name: str, field: jax.Array) -> jax.Array:
        """`(field − mean) / std` of `name` (the target: unchanged unless `normalize_target`)."""
        return fields.normalise(field, *self._scale(name))

    def denormalise(self, name: str, field: jax.Array) -> jax.Array:
        """Inverse of `normalise`."""
        return fields.denormalise(field, *self._scale(name))

    def check_conditions(self, cond: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The conditions in model order (`fields.check_conditions`)."""
        return fields.check_conditions(cond, self.condition_names)

    # --- pure functions --------------------------------------------------------------------

    def init(self, key: jax.Array, n: int, batch: int = 1) -> Any:
        """Parameters for `[batch, n, n]` fields (the same parameters serve any grid ≥ 2·modes)."""
        x = jnp.zeros((batch, n, n))
        cond = {name: x for name in self.condition_names}
        if self.kind == "regression":
            return self.network.init(key, cond)
        return self.network.init(key, x, jnp.ones((batch,)), cond)

    def chunk_size(self, n: int) -> int | None:
        """Samples per inference slice on an `n`² grid (`None`: the whole batch at once)."""
        return chunking.resolve_chunk(self.batch_chunk, 4 * self.network.width * n * n)

    def _map(self, fn: Any, params: Any, *args: Any, fold: bool = True) -> Any:
        """`fn(params, *args)` on batch slices (`chunk_size` of the grid of the first field);
        with `fold`, a vmap over the args folds into the batch (`chunking.fold_vmap`; no
        reverse-mode AD, so the loss passes `fold=False`)."""
        chunk = self.chunk_size(jax.tree.leaves(args)[0].shape[-1])

        def run(p: Any, *a: Any) -> Any:
            return chunking.map_batch(functools.partial(fn, p), chunk, *a)

        return (chunking.fold_vmap(run) if fold else run)(params, *args)

    def encode(self, params: Any, cond: Mapping[str, jax.Array]) -> jax.Array:
        """Condition features `[B, C, n, n]` (normalised conditions through the condition
        branches)."""
        return self._encode(params, cond, fold=True)

    def _encode(self, params: Any, cond: Mapping[str, jax.Array], fold: bool) -> jax.Array:
        cond = self.check_conditions(cond)
        normalised = {n: self.normalise(n, v) for n, v in cond.items()}
        encode = functools.partial(self.network.apply, method=self.network.encode)
        return self._map(encode, params, normalised, fold=fold)

    def score_fn(self, params: Any, features: jax.Array) -> losses.ScoreFn:
        """score(x_t, t) in the diffusion's units, with the condition features closed over."""
        return self._score_fn(params, features, fold=True)

    def _score_fn(self, params: Any, features: jax.Array, fold: bool) -> losses.ScoreFn:
        denoise = functools.partial(self.network.apply, method=self.network.denoise)

        def net(x: jax.Array, tau: jax.Array) -> jax.Array:
            tau = jnp.broadcast_to(tau, x.shape[:1])
            return self._map(denoise, params, x, tau, features, fold=fold)

        return losses.make_score_fn(net, self.sde, self.parameterization, self.sigma_data)

    def forward(
        self, params: Any, x_t: jax.Array, t: jax.Array, cond: Mapping[str, jax.Array]
    ) -> jax.Array:
        """The raw score network `network.apply(params, x_t, t, cond)` `[B, n, n]` (network
        units, no normalisation), computed on batch slices as in sampling."""
        if self.kind != "score":
            raise ValueError("forward() is the score network's; use predict() for 'regression'")
        t = jnp.broadcast_to(jnp.asarray(t), x_t.shape[:1])
        return self._map(self.network.apply, params, x_t, t, dict(cond))

    def sample(
        self,
        params: Any,
        key: jax.Array,
        cond: Mapping[str, jax.Array],
        sampler: samplers.SamplerConfig,
    ) -> jax.Array:
        """One closure sample per condition: `[B, n, n]` physical units (jit/vmap-able)."""
        if self.kind != "score":
            raise ValueError("sample() needs a score model; use predict() for kind='regression'")
        features = self.encode(params, cond)
        shape = tuple(cond[self.condition_names[0]].shape)
        x, _ = sampler.sample(key, self.score_fn(params, features), self.sde, shape)
        return self.denormalise("target", x)

    def predict(self, params: Any, cond: Mapping[str, jax.Array]) -> jax.Array:
        """The regression baseline's closure `[B, n, n]` in physical units."""
        if self.kind != "regression":
            raise ValueError("predict() is for kind='regression'; use sample() for score models")
        cond = self.check_conditions(cond)
        normalised = {n: self.normalise(n, v) for n, v in cond.items()}
        return self.denormalise("target", self._map(self.network.apply, params, normalised))

    def loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Training loss of a batch of PHYSICAL fields (conditions and "target")."""
        target = self.normalise("target", batch["target"])
        if self.kind == "regression":
            cond = {n: self.normalise(n, batch[n]) for n in self.condition_names}
            pred = self._map(self.network.apply, params, cond, fold=False)
            per_sample = jnp.sum((pred - target) ** 2, axis=(-2, -1))
            return jnp.mean(per_sample), {}
        features = self._encode(params, {n: batch[n] for n in self.condition_names}, fold=False)
        score = self._score_fn(params, features, fold=False)
        value = losses.dsm_loss(key, target, score, self.sde, losses.uniform_t(*self.train_times))
        return value, {}


def make_sde(diffusion: Mapping[str, Any]) -> Any:
    """VE (σ) or VP (β_min, β_max) SDE from the `diffusion` config section."""
    name = diffusion["sde"]
    if name == "ve":
        return sde_lib.VESDE(sigma=float(diffusion["sigma"]))
    if name == "vp":
        return sde_lib.VPSDE(
            beta_min=float(diffusion["beta_min"]), beta_max=float(diffusion["beta_max"])
        )
    raise ValueError(f"diffusion.sde={name!r} is invalid; allowed: ('ve', 'vp')")


def sampler_from_config(sampler: Mapping[str, Any], **overrides: Any) -> samplers.SamplerConfig:
    """`SamplerConfig` from the `sampler` config section (every field of `SamplerConfig`; schema:
    closurejax.config), with `overrides` applied last.

    name, num_steps, t_min, t_max, rho, snr and corrector_steps are required; the other fields
    take `SamplerConfig`'s defaults when absent (a section saved before they were config fields
    builds the same sampler). `final_zero` must be a bool; `SamplerConfig` validates the rest.
    """
    defaults = samplers.SamplerConfig()

    def get(name: str) -> Any:
        return sampler[name] if name in sampler else getattr(defaults, name)

    final_zero = get("final_zero")
    if not isinstance(final_zero, bool):
        raise invalid("sampler", "final_zero", final_zero, "True or False")
    fields = dict(
        name=sampler["name"],
        num_steps=int(sampler["num_steps"]),
        t_min=float(sampler["t_min"]),
        t_max=float(sampler["t_max"]),
        schedule=get("schedule"),
        rho=float(sampler["rho"]),
        final_zero=final_zero,
        prior_data_std=float(get("prior_data_std")),
        predictor=get("predictor"),
        corrector_steps=int(sampler["corrector_steps"]),
        snr=float(sampler["snr"]),
        langevin_norm=get("langevin_norm"),
        time_variable=get("time_variable"),
    )
    fields.update(overrides)
    return samplers.SamplerConfig(**fields)


_LATER_SAMPLER_FIELDS = (
    "schedule",
    "final_zero",
    "prior_data_std",
    "predictor",
    "langevin_norm",
    "time_variable",
)
"""`SamplerConfig` fields that became `sampler` config fields after results were first cached."""


def sampler_identity(sampler: Mapping[str, Any]) -> dict[str, Any]:
    """The `sampler` section as a cache key (JSON types): every field, except that the fields of
    `_LATER_SAMPLER_FIELDS` are left out while they hold `SamplerConfig`'s default — the sampler
    every result cached before they were config fields ran with — so those results stay valid,
    and any other value of them is a new key."""
    defaults = samplers.SamplerConfig()
    out = dict(sampler)
    for name in _LATER_SAMPLER_FIELDS:
        if name in out and out[name] == getattr(defaults, name):
            del out[name]
    return out


def train_times_from_config(
    diffusion: Mapping[str, Any], sampler: Mapping[str, Any]
) -> tuple[float, float]:
    """(t_min, t_max) of the uniform training times: the sampler's window ("sampler_range") or
    paper A's U[t_min_train, t_max_train] ("paper"), per `diffusion.t_sampling`."""
    t_sampling = diffusion["t_sampling"]
    if t_sampling == "sampler_range":
        return float(sampler["t_min"]), float(sampler["t_max"])
    if t_sampling == "paper":
        return float(diffusion["t_min_train"]), float(diffusion["t_max_train"])
    raise ValueError(
        f"diffusion.t_sampling={t_sampling!r} is invalid; allowed: ('sampler_range', 'paper')"
    )


def from_config(config: Mapping[str, Any], stats: Stats) -> ClosureModel:
    """The closure model of a study config (sections model, diffusion, sampler) and data stats."""
    model, diffusion, sampler = config["model"], config["diffusion"], config["sampler"]
    if "target" in stats:  # the derived previous-snapshot condition shares the target's scale
        stats = {**stats, PREVIOUS_TARGET: stats["target"]}
    kind = model["kind"]
    conditions = tuple(model["conditions"])
    if not conditions:
        raise ValueError("model.conditions must name at least one dataset array")
    common = dict(
        width=int(model["width"]),
        modes=int(model["modes"]),
        depth=int(model["depth"]),
        condition_names=conditions,
        spectral_method=model["spectral_method"],
    )
    if kind == "score":
        network: nn.Module = fno.ConditionalFNO(
            embed_dim=int(model["embed_dim"]), embed_scale=float(model["embed_scale"]), **common
        )
    elif kind == "regression":
        network = fno.DeterministicFNO(**common)
    else:
        raise ValueError(f"model.kind={kind!r} is invalid; allowed: {KINDS}")
    train_times = train_times_from_config(diffusion, sampler)
    return ClosureModel(
        network=network,
        kind=kind,
        sde=make_sde(diffusion),
        parameterization=diffusion["parameterization"],
        sigma_data=float(diffusion["sigma_data"]),
        condition_names=conditions,
        stats=stats,
        normalize_target=bool(diffusion.get("normalize_target", False)),
        train_times=train_times,
        batch_chunk=chunking.check_chunk(model.get("batch_chunk", "auto"), "model.batch_chunk"),
    )
