"""The conditional diffusion closure model in physical space: U ~ p(U | y) (arXiv 2408.02965;
the P-CDM of arXiv 2506.20771). Its deterministic baseline is `closurejax.models.regression`.

A `ClosureModel` bundles the conditional FNO score network, the SDE and the output
parameterisation, and the normalisation of the fields (`closurejax.models.fields.FieldModel`).
It exposes the pure functions the rest of the library closes over:

* `sample(params, key, cond, sampler) -> U [B, n, n]`: encodes the condition ONCE (the condition
  branches do not depend on the noise level; the papers' code recomputes them at every sampler
  step), runs any sampler of `closurejax.diffusion.samplers` with the target branch
  only, and returns the closure in physical units;
* `loss(params, batch, key)` for training (denoising score matching with λ(t) = σ(t)²).

Every network evaluation (`encode`, each score evaluation, `forward`, and so `loss`)
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
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from closurejax.config_section import invalid
from closurejax.diffusion import losses, samplers
from closurejax.diffusion import sde as sde_lib
from closurejax.models import chunking, fields, fno

Stats = fields.Stats


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ClosureModel(fields.FieldModel):
    """The P-CDM: a conditional score model in physical space; see the module docstring.

    Attributes (besides `fields.FieldModel`'s network, condition_names, stats,
    normalize_target and batch_chunk):
      network: `fno.ConditionalFNO`.
      sde: forward SDE.
      parameterization: "score_over_sigma" (papers) or "edm".
      sigma_data: EDM's data std (in the units the diffusion runs in).
      train_times: (t_min, t_max) of the training-time distribution.
      train_time_spacing: "uniform" (t ~ U[t_min, t_max]) or "log_sigma" (log σ(t) uniform).
      noise_input: what the network's noise embedding receives, "t" (papers) or "c_noise"
        (EDM's ¼ ln σ(t); `losses.make_score_fn`).
      loss_weighting: the denoising score-matching weighting, "sigma2" (papers, λ(t) = σ(t)²) or
        "edm" (Karras et al.'s, `losses.named_weighting`).
    """

    sde: Any
    parameterization: str
    sigma_data: float
    train_times: tuple[float, float]
    train_time_spacing: str = "uniform"
    noise_input: str = "t"
    loss_weighting: str = "sigma2"

    kind: ClassVar[str] = "score"

    # --- pure functions --------------------------------------------------------------------

    def init(self, key: jax.Array, n: int, batch: int = 1) -> Any:
        """Parameters for `[batch, n, n]` fields (the same parameters serve any grid ≥ 2·modes)."""
        x = jnp.zeros((batch, n, n))
        cond = {name: x for name in self.condition_names}
        return self.network.init(key, x, jnp.ones((batch,)), cond)

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

        return losses.make_score_fn(
            net, self.sde, self.parameterization, self.sigma_data, self.noise_input
        )

    def forward(
        self, params: Any, x_t: jax.Array, t: jax.Array, cond: Mapping[str, jax.Array]
    ) -> jax.Array:
        """The raw score network `network.apply(params, x_t, t, cond)` `[B, n, n]` (network
        units, no normalisation), computed on batch slices as in sampling."""
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
        features = self.encode(params, cond)
        shape = tuple(cond[self.condition_names[0]].shape)
        x, _ = sampler.sample(key, self.score_fn(params, features), self.sde, shape)
        return self.denormalise("target", x)

    def loss(
        self, params: Any, batch: Mapping[str, jax.Array], key: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Denoising score matching (λ(t) = σ(t)² or EDM's, `loss_weighting`) of a batch of
        PHYSICAL fields (conditions and "target")."""
        target = self.normalise("target", batch["target"])
        features = self._encode(params, {n: batch[n] for n in self.condition_names}, fold=False)
        score = self._score_fn(params, features, fold=False)
        times = losses.sampler_range_t(self.sde, *self.train_times, spacing=self.train_time_spacing)
        weighting = losses.named_weighting(self.loss_weighting, self.sde, self.sigma_data)
        value = losses.dsm_loss(key, target, score, self.sde, times, weighting)
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
    settings = dict(
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
    settings.update(overrides)
    return samplers.SamplerConfig(**settings)


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


_LATER_DIFFUSION_FIELDS = {"noise_input": "t", "loss_weighting": "sigma2"}
"""Fields added to the `diffusion` section after results were cached, with the value every
earlier result was made with (`diffusion_identity`)."""


def diffusion_identity(diffusion: Mapping[str, Any]) -> dict[str, Any]:
    """The `diffusion` section as a cache key: every field, except that a field of
    `_LATER_DIFFUSION_FIELDS` is left out while it holds the value results were made with before
    it was a field — so those results stay valid — and any other value of it is a new key."""
    out = dict(diffusion)
    for name, before in _LATER_DIFFUSION_FIELDS.items():
        if name in out and out[name] == before:
            del out[name]
    return out


_TIME_SPACINGS = {
    "sampler_range": "uniform",
    "sampler_range_log_sigma": "log_sigma",
    "paper": "uniform",
}
"""`diffusion.t_sampling` -> how its training times fill their window (`losses.sampler_range_t`)."""

T_SAMPLINGS = tuple(_TIME_SPACINGS)
"""Values of `diffusion.t_sampling` (`train_times_from_config`)."""


def _t_sampling(diffusion: Mapping[str, Any]) -> str:
    """`diffusion.t_sampling`, or a one-line error naming the allowed values."""
    t_sampling = diffusion["t_sampling"]
    if t_sampling not in T_SAMPLINGS:
        raise invalid("diffusion", "t_sampling", t_sampling, str(T_SAMPLINGS))
    return t_sampling


def train_times_from_config(
    diffusion: Mapping[str, Any], sampler: Mapping[str, Any]
) -> tuple[float, float]:
    """(t_min, t_max) of the training times: the sampler's window ("sampler_range",
    "sampler_range_log_sigma") or paper A's U[t_min_train, t_max_train] ("paper"), per
    `diffusion.t_sampling`."""
    if _t_sampling(diffusion) == "paper":
        return float(diffusion["t_min_train"]), float(diffusion["t_max_train"])
    return float(sampler["t_min"]), float(sampler["t_max"])


def train_time_spacing_from_config(diffusion: Mapping[str, Any]) -> str:
    """How training times fill their window: "log_sigma" (log σ(t) uniform) for
    `t_sampling = "sampler_range_log_sigma"`, else "uniform" in t."""
    return _TIME_SPACINGS[_t_sampling(diffusion)]


def _later_field(diffusion: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    """`diffusion.<name>` of a field of `_LATER_DIFFUSION_FIELDS` (its earlier value when absent:
    configs saved before it was a field), or a one-line error naming the `allowed` values."""
    value = diffusion.get(name, _LATER_DIFFUSION_FIELDS[name])
    if value not in allowed:
        raise invalid("diffusion", name, value, str(allowed))
    return value


def noise_input_from_config(diffusion: Mapping[str, Any]) -> str:
    """`diffusion.noise_input` ("t" when absent), checked against `losses.NOISE_INPUTS`."""
    return _later_field(diffusion, "noise_input", losses.NOISE_INPUTS)


def loss_weighting_from_config(diffusion: Mapping[str, Any]) -> str:
    """`diffusion.loss_weighting` ("sigma2" when absent), checked against
    `losses.LOSS_WEIGHTINGS`."""
    return _later_field(diffusion, "loss_weighting", losses.LOSS_WEIGHTINGS)


def from_config(config: Mapping[str, Any], stats: Stats) -> ClosureModel:
    """The P-CDM of a study config (sections model, diffusion, sampler) and data stats
    (`closurejax.diffusion.kinds.from_config` builds a model of any kind)."""
    model, diffusion, sampler = config["model"], config["diffusion"], config["sampler"]
    if model["kind"] != ClosureModel.kind:
        raise ValueError(
            f"model.kind={model['kind']!r}: conditional.from_config builds kind "
            f"{ClosureModel.kind!r} (closurejax.diffusion.kinds.from_config builds every kind)"
        )
    settings = fno.settings_from_config(model)
    network = fno.ConditionalFNO(
        embed_dim=int(model["embed_dim"]), embed_scale=float(model["embed_scale"]), **settings
    )
    return ClosureModel(
        network=network,
        sde=make_sde(diffusion),
        parameterization=diffusion["parameterization"],
        sigma_data=float(diffusion["sigma_data"]),
        condition_names=settings["condition_names"],
        stats=fields.with_previous_target(stats),
        normalize_target=bool(diffusion.get("normalize_target", False)),
        train_times=train_times_from_config(diffusion, sampler),
        train_time_spacing=train_time_spacing_from_config(diffusion),
        noise_input=noise_input_from_config(diffusion),
        loss_weighting=loss_weighting_from_config(diffusion),
        batch_chunk=chunking.check_chunk(model.get("batch_chunk", "auto"), "model.batch_chunk"),
    )
