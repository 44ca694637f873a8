"""Paper B's latent closure model (L-CDM) built from a study config (arXiv 2506.20771).

`LatentDiffusionModel` bundles two deterministic convolutional autoencoders
(`closurejax.models.autoencoder.Autoencoder`: ``E_H, D_H`` for the closure target ``H`` and
``E_omega, D_omega`` for the vorticity), a conditional FNO score network on the latent grid
(`closurejax.models.fno.ConditionalFNO`, its one condition branch fed the omega latent), the SDE of
the latent diffusion and the training statistics. It has the calling convention of
`closurejax.diffusion.conditional.ClosureModel`, so the offline evaluation and the online solver
take either:

* ``kind = "latent"``, ``condition_names = ("omega",)``, ``sde``, ``stats``;
* ``init(key, n) -> params = {"target_ae", "omega_ae", "score"}`` (each a Flax variables dict);
* ``sample(params, key, cond, sampler) -> H [B, n, n]`` in physical units;
* ``loss(params, batch, key) -> (loss, aux)``: paper B's joint loss;
* ``reconstruct(params, name, field)``, ``encode``, ``decode`` for evaluation.

**Normalisation.** Both fields are standardised with the statistics of the training split before
they enter an autoencoder, ``x' = (x - mean_x) / std_x`` (``stats["target"]``, ``stats["omega"]``),
and decoded fields are mapped back, ``x = x' std_x + mean_x``. So the reconstruction MSE of the
loss is in units of the field's variance, and the weights ``(10, 0.1)`` trade the two fields off as
in paper B (whose data loader standardises both fields the same way). The latents are not rescaled:
the KL term keeps ``z_H`` near ``N(0, 1)`` per dimension (joint training).

**Sampling** (paper B, "Sampling"; `closurejax.diffusion.latent.latent_sample`): for a condition
``omega [B, n, n]``,

    f     = C_theta(E_omega((omega - mean) / std))       (condition branch of the latent FNO,
                                                          computed ONCE per call)
    z_H   ~ sampler with score s(z_t, t) = F_theta(z_t, t, f) / sigma(t)     (z_t [B, m, m])
    H     = D_H(z_H) std_H + mean_H                      (decoded ONCE)

with ``m = n / 2^L`` (``L`` = downsamplings of the autoencoders); only the latent FNO's target
branch runs inside the sampler's ``lax.scan``. The autoencoders run on cache-sized batch slices
(``batch_chunk``, `closurejax.models.chunking`; "auto": on a single CPU device, one sample per
slice at paper B's 64² with 128 full-resolution channels): on the 2-core development CPU the
paper-size ω encoder at batch 100 takes 4.5 s in slices of one against 10.7 s in one call, the
decoder 3.5 s against 8.3 s. Under ``jax.vmap`` (online ensembles) the inference paths fold the
mapped axis into the batch (`closurejax.models.chunking.fold_vmap`). The training losses run the
autoencoders on the whole batch: reverse-mode AD through the slices' loop is many times slower
(the gradient of the fast8 pair's joint loss at batch 32: 21 s in slices, 1.3 s in one call on
the development CPU; paper B's pair trained at ≈ 290 s per step in slices), and it still is with
each slice rematerialised (`chunking.map_batch`'s ``remat``): 12.6 s in slices of 8 against
0.98 s in one call on a 2-core EPYC with AVX-512.

**Joint training** (``loss``; paper B, "Joint training"; `closurejax.diffusion.latent.
joint_latent_loss`): with normalised fields ``H', omega'``, ``z_H = E_H(H')``,
``z_omega = E_omega(omega')``,

    L = w_H MSE(D_H(z_H), H') + w_omega MSE(D_omega(z_omega), omega')
      + w_s DSM(z_H | z_omega) + w_KL KL(z_H),

weights ``(10, 0.1, 0.1, 0.01)``, DSM with ``lambda = sigma^2`` and ``t ~ U[t_min, t_max]`` (the
``diffusion.t_sampling`` window), gradients flowing into all three networks.

*Latent scale.* The DSM term can be lowered by shrinking ``z_H`` (`closurejax.diffusion.latent`),
and at paper B's weights the KL term (0.01) holds it back only weakly: in the CPU study
(experiments/configs/cpu_latent.py, 80 epochs) the joint encoder ended with ``z_H`` of per-entry
batch std 0.023 (KL ≈ 3.2), so the sampler's noise levels (sigma from 1.44 down to 0.032) mostly lie
far above the latent scale and 10 Euler–Maruyama steps gave over-dispersed samples (spread/skill
1.27; 0.79 with 50 steps), while the two-stage latents kept std ≈ 0.8 (spread/skill 0.89 at 10
steps). The cause is ours: the DSM term sums over the latent entries and the KL term averages over
them, so the KL weighs ``m^2`` times less per entry than paper B's ``(w_s, w_KL)`` suggest.
``latent.kl_reduction = "sum"`` reduces both alike (joint latents then keep an O(1) spread) and
``latent.dsm_target_grad = False`` stops the DSM gradient at ``z_H``; both default to the old
behaviour (`closurejax.diffusion.latent`, "Latent collapse"). Every loss reports the batch spread
``latent_std`` of ``z_H`` (`latent.latent_std`), so the training metrics (metrics.jsonl) show it.

**Cost-designed autoencoders** (closurejax issue 11): `AE_PRESETS` names ``latent`` settings of
autoencoders with a space-to-depth stem (`closurejax.models.autoencoder`) that cost 6x ("fast16":
16^2 latent) and 24x ("fast8": 8^2 latent) fewer FLOPs than paper B's
(`closurejax.models.flops.autoencoder_flops`); experiments/configs/paper_b_lcdm_fast16.py and
paper_b_lcdm_fast8.py apply them.

**Two-stage baseline** (paper B): stage 1 trains the autoencoders alone on
``reconstruction_loss`` (``w_H MSE_H + w_omega MSE_omega + w_KL KL(z_H)``, paper: ``w_KL = 0``);
stage 2 freezes them, encodes the dataset (``encode_latents``) and trains the latent score on
``latent_loss`` (DSM only). `closurejax.training.run` drives both.

Latents keep their channel axis inside the autoencoders (``[B, m, m, 1]``); the model works with
``[B, m, m]`` (paper B's one latent channel), the layout of the FNO's fields. Everything is a pure
function of explicit parameters, jit- and vmap-able (close over or mark static the sampler).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from closurejax.diffusion import conditional, latent, losses, samplers
from closurejax.models import autoencoder, chunking, fields, fno

__all__ = [
    "AE_PRESETS",
    "FIELDS",
    "KIND",
    "TRAINING_MODES",
    "LatentDiffusionModel",
    "from_config",
    "training_mode",
]

Array = jax.Array
Stats = fields.Stats

KIND = "latent"
"""`model.kind` of the latent closure model."""
TRAINING_MODES = ("joint", "two_stage")
"""`latent.training_mode`: one optimiser over everything, or autoencoders first, then the score."""
FIELDS = ("target", "omega")
"""The two fields with an autoencoder each (dataset array names)."""

_PAPER_B_AE: dict[str, Any] = dict(
    ae_channels=(64, 128, 256),
    ae_num_res_blocks=1,
    ae_attention=True,
    ae_num_heads=8,
    ae_groups=32,
    ae_stem="conv",
    ae_stem_factor=1,
)
AE_PRESETS: dict[str, dict[str, Any]] = {
    "paper_b": _PAPER_B_AE,
    "fast16": {
        **_PAPER_B_AE,
        "ae_channels": (64, 128),
        "ae_stem": "space_to_depth",
        "ae_stem_factor": 2,
    },
    "fast8": {
        **_PAPER_B_AE,
        "ae_channels": (64, 128),
        "ae_stem": "space_to_depth",
        "ae_stem_factor": 4,
    },
}
"""Named ``latent``-section autoencoder settings (`config.latent.update(AE_PRESETS[name])`).

* ``"paper_b"``: paper B's autoencoder (64^2 -> 16^2; 9.0 M parameters, 9.61 GFLOP per sample
  for encode omega + decode H);
* ``"fast16"``: 2x2 space-to-depth stem, one level 64 -> 128 on 32^2, attention on 16^2
  (64^2 -> 16^2; 2.1 M parameters, 1.60 GFLOP: 6.0x fewer);
* ``"fast8"``: 4x4 space-to-depth stem, one level 64 -> 128 on 16^2, attention on 8^2
  (64^2 -> 8^2; 2.1 M parameters, 0.39 GFLOP: 24x fewer; the latent FNO's modes must stay
  <= 4).
"""


def _check_field(name: str, field: Array) -> tuple[int, int]:
    """Check ``field`` is ``[batch, n, n]`` with ``batch >= 1``; return ``(batch, n)``."""
    shape = tuple(jnp.shape(field))
    if len(shape) != 3 or shape[0] < 1 or shape[1] != shape[2]:
        raise ValueError(f"{name} must be a [batch, n, n] field with batch >= 1, got shape {shape}")
    return shape[0], shape[1]


def _check_weights(name: str, weights: Any, count: int, labels: str) -> tuple[float, ...]:
    """``weights`` as a tuple of ``count`` finite non-negative floats, else a clear error."""
    try:
        values = tuple(weights)
    except TypeError:
        values = ()
    if len(values) != count or any(
        isinstance(v, bool)
        or not isinstance(v, numbers.Real)
        or not math.isfinite(float(v))
        or v < 0
        for v in values
    ):
        raise ValueError(
            f"{name}={weights!r} is invalid: expected {count} finite non-negative numbers "
            f"({labels})"
        )
    return tuple(float(v) for v in values)


@dataclasses.dataclass(frozen=True, eq=False)
class LatentDiffusionModel:
    """Paper B's L-CDM closure model; see the module docstring.

    Attributes:
        target_ae: autoencoder of the closure target ``H``.
        omega_ae: autoencoder of the vorticity (the condition).
        score_network: conditional FNO on the latent grid (``condition_names=("omega",)``).
        sde: forward SDE of the latent diffusion (paper B: VE, sigma = 30).
        stats: name -> ``{"mean", "std"}`` of the training split; needs ``"target"`` and
            ``"omega"``.
        loss_weights: ``(w_H, w_omega, w_s, w_KL)`` of the joint loss (paper B: 10, 0.1, 0.1,
            0.01).
        stage1_weights: ``(w_H, w_omega, w_KL)`` of the two-stage baseline's autoencoder stage
            (paper B: reconstruction only, ``w_KL = 0``).
        parameterization: ``"score_over_sigma"`` (papers) or ``"edm"``
            (`closurejax.diffusion.losses.make_score_fn`).
        sigma_data: EDM's data std (latent units).
        train_times: ``(t_min, t_max)`` of the training-time distribution.
        train_time_spacing: ``"uniform"`` in ``t`` or ``"log_sigma"`` (log σ(t) uniform).
        noise_input: the latent FNO's noise input, ``"t"`` (papers) or ``"c_noise"`` (EDM's
            ¼ ln σ(t); `closurejax.diffusion.losses.make_score_fn`).
        loss_weighting: the DSM term's weighting, ``"sigma2"`` (papers) or ``"edm"``
            (`closurejax.diffusion.losses.named_weighting`, with ``sigma_data`` in latent units).
        kl_eps: ``eps`` inside the log of the KL penalty (`latent.batch_kl`).
        batch_chunk: samples per autoencoder slice (`closurejax.models.chunking`).
        dsm_target_grad: paper B (``True``): the joint loss's DSM term trains the target encoder;
            ``False``: it does not (`latent.joint_latent_loss`; module docstring, "Latent scale").
        kl_reduction: ``"mean"`` (default) or ``"sum"`` over latent entries, the KL term of both
            training modes (`latent.batch_kl`, `latent.KL_REDUCTIONS`).
    """

    target_ae: autoencoder.Autoencoder
    omega_ae: autoencoder.Autoencoder
    score_network: fno.ConditionalFNO
    sde: Any
    stats: Stats
    loss_weights: tuple[float, float, float, float] = latent.PAPER_B_LOSS_WEIGHTS
    stage1_weights: tuple[float, float, float] = (10.0, 0.1, 0.0)
    parameterization: str = "score_over_sigma"
    sigma_data: float = 1.0
    train_times: tuple[float, float] = (1e-3, 0.4)
    train_time_spacing: str = "uniform"
    noise_input: str = "t"
    loss_weighting: str = "sigma2"
    kl_eps: float = 1e-8
    batch_chunk: chunking.ChunkSetting = "auto"
    dsm_target_grad: bool = True
    kl_reduction: str = "mean"

    kind: ClassVar[str] = KIND
    condition_names: ClassVar[tuple[str, ...]] = ("omega",)

    def __post_init__(self) -> None:
        chunking.check_chunk(self.batch_chunk, "model.batch_chunk")
        missing = [n for n in FIELDS if n not in self.stats]
        if missing:
            raise ValueError(f"normalisation statistics missing for {missing}")
        for name in FIELDS:
            std = float(self.stats[name]["std"])
            if not (math.isfinite(std) and std > 0):
                raise ValueError(f"stats[{name!r}]['std']={std!r} must be a finite number > 0")
        if tuple(self.score_network.condition_names) != ("omega",):
            raise ValueError(
                "the latent score network must condition on ('omega',) (the omega latent), got "
                f"{tuple(self.score_network.condition_names)}"
            )
        if self.target_ae.latent_channels != 1 or self.omega_ae.latent_channels != 1:
            raise ValueError(
                "latent.latent_channels must be 1 (paper B's 1 x m x m latent: the latent FNO "
                f"takes [batch, m, m] fields), got {self.target_ae.latent_channels}"
            )
        if self.target_ae.downsampling_factor != self.omega_ae.downsampling_factor:
            raise ValueError(
                "the two autoencoders must downsample equally often (their latents share the "
                "latent FNO's grid)"
            )
        object.__setattr__(
            self,
            "loss_weights",
            _check_weights("latent.loss_weights", self.loss_weights, 4, "w_H, w_omega, w_s, w_KL"),
        )
        object.__setattr__(
            self,
            "stage1_weights",
            _check_weights("latent.stage1_weights", self.stage1_weights, 3, "w_H, w_omega, w_KL"),
        )
        if self.kl_reduction not in latent.KL_REDUCTIONS:
            raise ValueError(
                f"latent.kl_reduction={self.kl_reduction!r} is invalid; allowed: "
                f"{latent.KL_REDUCTIONS}"
            )
        t_min, t_max = (float(t) for t in self.train_times)
        if not 0 <= t_min < t_max:
            raise ValueError(f"train_times={self.train_times!r} must satisfy 0 <= t_min < t_max")

    # --- geometry --------------------------------------------------------------------------

    @staticmethod
    def levels_of(ae: autoencoder.Autoencoder) -> int:
        """Downsamplings ``L = len(channels) - 1`` of an autoencoder."""
        return len(tuple(ae.channels)) - 1

    @property
    def levels(self) -> int:
        """Stride-2 downsamplings ``L`` of both autoencoders after their stem."""
        return self.levels_of(self.target_ae)

    @property
    def factor(self) -> int:
        """Field size / latent size, ``stem_factor * 2^L`` (paper B: ``2^2 = 4``)."""
        return self.target_ae.downsampling_factor

    def latent_size(self, n: int) -> int:
        """The latent grid ``m = n / 2^L`` of an ``n x n`` field; clear errors for a bad ``n``.

        Raises:
            ValueError: if ``n`` is not divisible by ``2^L`` or ``m < 2 * modes`` of the latent
                FNO.
        """
        factor = self.factor
        if n % factor:
            stem = self.target_ae.stem_factor
            what = "2^L" if stem == 1 else f"latent.ae_stem_factor={stem} * 2^L"
            raise ValueError(
                f"grid n={n} is not divisible by {what} = {factor} (L = {self.levels} "
                "downsamplings of the autoencoders, latent.ae_channels): choose data.coarse_size "
                f"a multiple of {factor} or fewer autoencoder levels"
            )
        m = n // factor
        if m < 2 * self.score_network.modes:
            raise ValueError(
                f"latent grid m = n / 2^L = {n}/{factor} = {m} is smaller than 2 * latent.modes = "
                f"{2 * self.score_network.modes}: lower latent.modes or use fewer levels"
            )
        return m

    # --- normalisation ---------------------------------------------------------------------

    def _autoencoder(self, name: str) -> autoencoder.Autoencoder:
        if name == "target":
            return self.target_ae
        if name == "omega":
            return self.omega_ae
        raise ValueError(f"field name {name!r} is invalid; allowed: {FIELDS}")

    def _scale(self, name: str) -> tuple[float, float]:
        if name not in FIELDS:
            raise ValueError(f"field name {name!r} is invalid; allowed: {FIELDS}")
        return fields.scale(self.stats, name)

    def normalise(self, name: str, field: Array) -> Array:
        """``(field - mean) / std`` with the training statistics of ``name``."""
        return fields.normalise(field, *self._scale(name))

    def denormalise(self, name: str, field: Array) -> Array:
        """``field * std + mean`` (inverse of `normalise`)."""
        return fields.denormalise(field, *self._scale(name))

    def check_conditions(self, cond: Mapping[str, Array]) -> dict[str, Array]:
        """``{"omega": [B, n, n]}`` from the condition mapping (`fields.check_conditions`)."""
        return fields.check_conditions(cond, self.condition_names)

    # --- autoencoders ----------------------------------------------------------------------

    def chunk_size(self, n: int) -> int | None:
        """Samples per autoencoder slice for ``[B, n, n]`` fields (``None``: one call); sized
        by the largest activation of one sample (`activation_size`)."""
        return chunking.resolve_chunk(self.batch_chunk, 4 * self.activation_size(n))

    def activation_size(self, n: int) -> int:
        """Floats in the largest activation of one sample's autoencoder pass on ``n x n``.

        On level ``i`` (grid ``n / (f 2^i)``) the encoder holds ``max(c_i, c_{i+1})`` channels
        (``c_i`` when ``num_res_blocks = 0``), the middle ``c_L`` on the latent grid; paper B's
        default: ``max(ae_channels[:2]) n^2`` = 128 n^2.
        """
        ae = self.target_ae
        channels = tuple(ae.channels)
        sizes = [(n // (ae.stem_factor * 2**i)) ** 2 for i in range(len(channels))]
        widest = [
            c if (i + 1 == len(channels) or ae.num_res_blocks == 0) else max(c, channels[i + 1])
            for i, c in enumerate(channels)
        ]
        return max(w * p for w, p in zip(widest, sizes, strict=True))

    def _sliced(self, apply: Any, ae_params: Any, field: Array, n: int, fold: bool) -> Array:
        """``apply(ae_params, field)`` on batch slices, a vmap over ``field`` folded into the
        batch (``chunking.fold_vmap``): the inference paths. ``fold=False`` marks a training loss
        (differentiated): one call on the whole batch (module docstring: AD through the slices'
        loop is many times slower)."""
        if not fold:
            return apply(ae_params, field)
        chunk = self.chunk_size(n)

        def run(p: Any, x: Array) -> Array:
            return chunking.map_batch(functools.partial(apply, p), chunk, x)

        return (chunking.fold_vmap(run) if fold else run)(ae_params, field)

    def _encode_normalised(
        self, params: Mapping[str, Any], name: str, field: Array, fold: bool = True
    ) -> Array:
        """Normalised ``[B, n, n]`` -> latent ``[B, m, m]`` (on batch slices)."""
        ae = self._autoencoder(name)

        def encode(p: Any, x: Array) -> Array:
            return ae.apply(p, x, method=ae.encode)[..., 0]

        return self._sliced(encode, params[f"{name}_ae"], field, field.shape[-1], fold)

    def _decode_normalised(
        self, params: Mapping[str, Any], name: str, z: Array, fold: bool = True
    ) -> Array:
        """Latent ``[B, m, m]`` -> normalised ``[B, n, n]`` (on batch slices)."""
        ae = self._autoencoder(name)

        def decode(p: Any, latent: Array) -> Array:
            return ae.apply(p, latent[..., None], method=ae.decode)

        n = z.shape[-1] * self.factor
        return self._sliced(decode, params[f"{name}_ae"], z, n, fold)

    def encode(self, params: Mapping[str, Any], name: str, field: Array) -> Array:
        """Latent ``[B, m, m]`` of a physical field ``[B, n, n]`` (``name``: "target" | "omega")."""
        _, n = _check_field(name, field)
        self.latent_size(n)
        return self._encode_normalised(params, name, self.normalise(name, field))

    def decode(self, params: Mapping[str, Any], name: str, z: Array) -> Array:
        """Physical field ``[B, n, n]`` of a latent ``[B, m, m]``."""
        return self.denormalise(name, self._decode_normalised(params, name, z))

    def reconstruct(self, params: Mapping[str, Any], name: str, field: Array) -> Array:
        """``D(E(field))`` in physical units, ``[B, n, n] -> [B, n, n]``."""
        return self.decode(params, name, self.encode(params, name, field))

    def encode_latents(
        self, params: Mapping[str, Any], batch: Mapping[str, Array]
    ) -> dict[str, Array]:
        """``{"z_target", "z_omega"}`` ``[B, m, m]`` of physical ``{"target", "omega"}``."""
        return {f"z_{name}": self.encode(params, name, batch[name]) for name in FIELDS}

    # --- parameters ------------------------------------------------------------------------

    def init_autoencoders(self, key: Array, n: int) -> dict[str, Any]:
        """``{"target_ae", "omega_ae"}`` variables for ``[B, n, n]`` fields."""
        self.latent_size(n)
        k_target, k_omega = jax.random.split(key)
        x = jnp.zeros((1, n, n))
        return {
            "target_ae": self.target_ae.init(k_target, x),
            "omega_ae": self.omega_ae.init(k_omega, x),
        }

    def init_score(self, key: Array, n: int) -> Any:
        """Variables of the latent FNO for ``n x n`` fields (latent grid ``m = n / 2^L``)."""
        m = self.latent_size(n)
        z = jnp.zeros((1, m, m))
        return self.score_network.init(key, z, jnp.ones((1,)), {"omega": z})

    def init(self, key: Array, n: int) -> dict[str, Any]:
        """``{"target_ae", "omega_ae", "score"}`` for ``[B, n, n]`` fields."""
        k_ae, k_score = jax.random.split(key)
        return {**self.init_autoencoders(k_ae, n), "score": self.init_score(k_score, n)}

    # --- latent score ----------------------------------------------------------------------

    def condition_features(self, score_params: Any, z_omega: Array) -> Array:
        """The latent FNO's condition branch on ``z_omega [B, m, m]`` -> ``[B, width, m, m]``."""
        net = self.score_network
        return net.apply(score_params, {"omega": z_omega}, method=net.encode)

    def score_fn(self, score_params: Any, features: Array) -> losses.ScoreFn:
        """``score(z_t [B, m, m], t [B])`` with the condition features closed over."""
        net = self.score_network

        def apply(z: Array, tau: Array) -> Array:
            return net.apply(score_params, z, tau, features, method=net.denoise)

        return losses.make_score_fn(
            apply, self.sde, self.parameterization, self.sigma_data, self.noise_input
        )

    def _latent_score(self, score_params: Any) -> latent.LatentScoreFn:
        """``(z_t, t, z_omega) -> score`` (encodes the condition at each call: for the loss)."""

        def latent_score_fn(z: Array, t: Array, z_omega: Array) -> Array:
            return self.score_fn(score_params, self.condition_features(score_params, z_omega))(z, t)

        return latent_score_fn

    # --- sampling --------------------------------------------------------------------------

    def sample(
        self,
        params: Mapping[str, Any],
        key: Array,
        cond: Mapping[str, Array],
        sampler: samplers.SamplerConfig,
    ) -> Array:
        """One closure sample per condition, ``[B, n, n]`` in physical units (module docstring).

        Args:
            params: ``{"target_ae", "omega_ae", "score"}``.
            key: PRNG key of the sampler.
            cond: ``{"omega": [B, n, n]}`` physical vorticity (extra keys are ignored).
            sampler: any `samplers.SamplerConfig` (a static argument under jit).
        """
        omega = self.check_conditions(cond)["omega"]
        m = self.latent_size(omega.shape[-1])

        def encode_condition(w: Array) -> Array:
            return self.condition_features(params["score"], self.encode(params, "omega", w))

        def decode_target(z: Array) -> Array:
            return self.decode(params, "target", z)

        def latent_score_fn(z: Array, t: Array, features: Array) -> Array:
            return self.score_fn(params["score"], features)(z, t)

        return latent.latent_sample(
            key, encode_condition, decode_target, latent_score_fn, self.sde, sampler, omega, (m, m)
        )

    # --- losses ----------------------------------------------------------------------------

    def _normalised_batch(self, batch: Mapping[str, Array]) -> dict[str, Array]:
        """``{"target", "omega"}`` normalised, after checking names and shapes."""
        missing = [n for n in FIELDS if n not in batch]
        if missing:
            raise ValueError(f"batch has no field(s) {missing}; got fields {sorted(batch)}")
        shapes = {n: tuple(jnp.shape(batch[n])) for n in FIELDS}
        for name in FIELDS:
            _, n = _check_field(f"batch[{name!r}]", batch[name])
            self.latent_size(n)
        if shapes["target"] != shapes["omega"]:
            raise ValueError(
                f"batch['target'] has shape {shapes['target']} but batch['omega'] has "
                f"{shapes['omega']}: target and condition must be paired"
            )
        return {n: self.normalise(n, batch[n]) for n in FIELDS}

    def _dsm_weighting(self) -> str | Callable[[Array], Array]:
        return losses.named_weighting(self.loss_weighting, self.sde, self.sigma_data)

    def _t_sampler(self) -> losses.TSampler:
        return losses.sampler_range_t(self.sde, *self.train_times, spacing=self.train_time_spacing)

    def loss(
        self, params: Mapping[str, Any], batch: Mapping[str, Array], key: Array
    ) -> tuple[Array, dict[str, Array]]:
        """Paper B's joint loss of a batch of PHYSICAL ``{"target", "omega"}`` ``[B, n, n]``.

        Returns ``(loss, {"mse_target", "mse_condition", "dsm", "kl", "latent_std"})``
        (unweighted terms, the MSEs in normalised units; ``latent_std`` is `latent.latent_std`
        of the batch's ``z_H``, the number to compare with the sampler's ``sigma(t)``).
        """
        fields = self._normalised_batch(batch)
        latents: dict[str, Array] = {}

        def encode_target(x: Array) -> Array:
            latents["target"] = self._encode_normalised(params, "target", x, fold=False)
            return latents["target"]

        loss, aux = latent.joint_latent_loss(
            key,
            fields,
            encode_target=encode_target,
            decode_target=lambda z: self._decode_normalised(params, "target", z, fold=False),
            encode_condition=lambda x: self._encode_normalised(params, "omega", x, fold=False),
            decode_condition=lambda z: self._decode_normalised(params, "omega", z, fold=False),
            latent_score_fn=self._latent_score(params["score"]),
            sde=self.sde,
            t_sampler=self._t_sampler(),
            weights=self.loss_weights,
            target_name="target",
            condition_name="omega",
            kl_eps=self.kl_eps,
            dsm_target_grad=self.dsm_target_grad,
            kl_reduction=self.kl_reduction,
            dsm_weighting=self._dsm_weighting(),
        )
        return loss, {**aux, "latent_std": latent.latent_std(latents["target"])}

    def reconstruction_loss(
        self, params: Mapping[str, Any], batch: Mapping[str, Array], key: Array
    ) -> tuple[Array, dict[str, Array]]:
        """Stage 1 of the two-stage baseline: ``w_H MSE_H + w_omega MSE_omega + w_KL KL(z_H)``.

        ``params`` needs only ``{"target_ae", "omega_ae"}``; ``key`` is unused (deterministic).
        Returns ``(loss, {"mse_target", "mse_condition", "kl", "latent_std"})``.
        """
        del key
        fields = self._normalised_batch(batch)
        z_target = self._encode_normalised(params, "target", fields["target"], fold=False)
        z_omega = self._encode_normalised(params, "omega", fields["omega"], fold=False)
        terms = {
            "mse_target": jnp.mean(
                (self._decode_normalised(params, "target", z_target, False) - fields["target"]) ** 2
            ),
            "mse_condition": jnp.mean(
                (self._decode_normalised(params, "omega", z_omega, False) - fields["omega"]) ** 2
            ),
            "kl": latent.batch_kl(z_target, self.kl_eps, self.kl_reduction),
        }
        w_h, w_omega, w_kl = self.stage1_weights
        total = w_h * terms["mse_target"] + w_omega * terms["mse_condition"] + w_kl * terms["kl"]
        return total, {**terms, "latent_std": latent.latent_std(z_target)}

    def latent_loss(
        self, score_params: Any, latents: Mapping[str, Array], key: Array
    ) -> tuple[Array, dict[str, Array]]:
        """Stage 2 of the two-stage baseline: DSM of the latent score on frozen latents.

        Args:
            score_params: the latent FNO's variables.
            latents: ``{"z_target", "z_omega"}`` ``[B, m, m]`` (`encode_latents`).
            key: PRNG key of the DSM draw.

        Returns:
            ``(dsm, {"latent_std": latent.latent_std(z_target)})``.
        """
        for name in ("z_target", "z_omega"):
            if name not in latents:
                raise ValueError(f"latents have no field {name!r}; got {sorted(latents)}")
        z_target, z_omega = latents["z_target"], latents["z_omega"]
        if jnp.shape(z_target) != jnp.shape(z_omega) or jnp.ndim(z_target) != 3:
            raise ValueError(
                f"z_target {jnp.shape(z_target)} and z_omega {jnp.shape(z_omega)} must both be "
                "[batch, m, m]"
            )
        features = self.condition_features(score_params, z_omega)
        value = losses.dsm_loss(
            key,
            z_target,
            self.score_fn(score_params, features),
            self.sde,
            self._t_sampler(),
            self._dsm_weighting(),
        )
        return value, {"latent_std": latent.latent_std(z_target)}


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name not in config:
        raise ValueError(f"config has no '{name}' section (closurejax/config.py documents it)")
    return config[name]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 1")
    return int(value)


def _stem(section: Mapping[str, Any]) -> tuple[str, int]:
    """``(latent.ae_stem, latent.ae_stem_factor)``, validated (absent: paper B's "conv", 1)."""
    stem = section.get("ae_stem", "conv")
    if stem not in autoencoder.STEMS:
        raise ValueError(f"latent.ae_stem={stem!r} is invalid; allowed: {autoencoder.STEMS}")
    factor = section.get("ae_stem_factor", 1)
    valid = not isinstance(factor, bool) and isinstance(factor, numbers.Integral)
    if stem == "conv" and not (valid and factor == 1):
        raise ValueError(
            f"latent.ae_stem_factor={factor!r} is invalid for latent.ae_stem='conv'; allowed: 1"
        )
    if stem != "conv" and not (valid and factor >= 2):
        raise ValueError(
            f"latent.ae_stem_factor={factor!r} is invalid for latent.ae_stem={stem!r}; allowed: "
            "an integer >= 2 (2 or 4: the grid the first convolution sees is n / factor)"
        )
    return stem, int(factor)


def training_mode(config: Mapping[str, Any]) -> str:
    """``latent.training_mode`` of a config, validated ("joint" | "two_stage")."""
    mode = _section(config, "latent")["training_mode"]
    if mode not in TRAINING_MODES:
        raise ValueError(f"latent.training_mode={mode!r} is invalid; allowed: {TRAINING_MODES}")
    return mode


def from_config(config: Mapping[str, Any], stats: Stats) -> LatentDiffusionModel:
    """The L-CDM of a study config (sections ``latent``, ``model``, ``diffusion``, ``sampler``,
    ``data``) and the training statistics (``stats["target"]``, ``stats["omega"]``).

    Validates the fields at this boundary: ``model.kind`` must be "latent", ``model.conditions``
    ``("omega",)``, ``latent.training_mode`` one of `TRAINING_MODES`, ``data.coarse_size``
    divisible by ``2^L`` with a latent grid ``>= 2 * latent.modes``, and the loss weights
    non-negative.
    """
    section = _section(config, "latent")
    model_section = _section(config, "model")
    diffusion = _section(config, "diffusion")
    sampler = _section(config, "sampler")
    if model_section["kind"] != KIND:
        raise ValueError(
            f"model.kind={model_section['kind']!r}: latent_model.from_config builds kind {KIND!r}"
        )
    conditions = tuple(model_section["conditions"])
    if conditions != ("omega",):
        raise ValueError(
            f"model.conditions={conditions!r} is invalid for model.kind='latent': the latent "
            "model conditions on ('omega',) only (paper B)"
        )
    training_mode(config)
    stem, stem_factor = _stem(section)
    channels = section["ae_channels"]
    fewest = 2 if stem == "conv" else 1
    if isinstance(channels, str) or not isinstance(channels, Sequence) or len(channels) < fewest:
        raise ValueError(
            f"latent.ae_channels={channels!r} is invalid: expected at least two positive ints "
            "(c_0, ..., c_L), L >= 1 downsamplings"
            if fewest == 2
            else f"latent.ae_channels={channels!r} is invalid: expected at least one positive "
            "int (c_0, ..., c_L), L >= 0 downsamplings after the stem"
        )
    blocks = section["ae_num_res_blocks"]
    if isinstance(blocks, bool) or not isinstance(blocks, numbers.Integral) or blocks < 0:
        raise ValueError(
            f"latent.ae_num_res_blocks={blocks!r} is invalid: expected an integer >= 0"
        )
    ae_kwargs = dict(
        channels=tuple(
            _positive_int(f"latent.ae_channels[{i}]", c) for i, c in enumerate(channels)
        ),
        latent_channels=_positive_int("latent.latent_channels", section["latent_channels"]),
        attention=bool(section["ae_attention"]),
        num_res_blocks=int(blocks),
        num_heads=_positive_int("latent.ae_num_heads", section["ae_num_heads"]),
        groups=_positive_int("latent.ae_groups", section["ae_groups"]),
        stem=stem,
        stem_factor=stem_factor,
    )
    dsm_target_grad = section.get("dsm_target_grad", True)
    if not isinstance(dsm_target_grad, bool):
        raise ValueError(
            f"latent.dsm_target_grad={dsm_target_grad!r} is invalid; allowed: True (paper B: the "
            "DSM term trains the target encoder) or False"
        )
    try:
        # validate the architecture here, with the config's names (Flax defers it to init)
        autoencoder._validate_architecture(autoencoder.Autoencoder(**ae_kwargs))
    except ValueError as error:
        raise ValueError(f"latent autoencoder: {error}") from None
    score = fno.ConditionalFNO(
        width=_positive_int("latent.width", section["width"]),
        modes=_positive_int("latent.modes", section["modes"]),
        depth=_positive_int("latent.depth", section["depth"]),
        embed_dim=_positive_int("latent.embed_dim", section["embed_dim"]),
        embed_scale=float(section["embed_scale"]),
        condition_names=("omega",),
        spectral_method=model_section["spectral_method"],
    )
    train_times = conditional.train_times_from_config(diffusion, sampler)
    if diffusion.get("normalize_target", False):
        raise ValueError(
            "diffusion.normalize_target=True has no meaning for model.kind='latent': the latent "
            "model always standardises both fields before its autoencoders"
        )
    model = LatentDiffusionModel(
        target_ae=autoencoder.Autoencoder(**ae_kwargs),
        omega_ae=autoencoder.Autoencoder(**ae_kwargs),
        score_network=score,
        sde=conditional.make_sde(diffusion),
        stats={n: dict(stats[n]) for n in FIELDS if n in stats},
        loss_weights=section["loss_weights"],
        stage1_weights=section["stage1_weights"],
        parameterization=diffusion["parameterization"],
        sigma_data=float(diffusion["sigma_data"]),
        train_times=train_times,
        train_time_spacing=conditional.train_time_spacing_from_config(diffusion),
        noise_input=conditional.noise_input_from_config(diffusion),
        loss_weighting=conditional.loss_weighting_from_config(diffusion),
        kl_eps=float(section["kl_eps"]),
        batch_chunk=model_section.get("batch_chunk", "auto"),
        dsm_target_grad=dsm_target_grad,
        kl_reduction=section.get("kl_reduction", "mean"),
    )
    if "data" in config:
        model.latent_size(int(config["data"]["coarse_size"]))
    return model
