"""Latent conditional diffusion (L-CDM): sample the closure in an autoencoder's latent space.

Paper B (Dong, Yang, Wu 2025, "Stochastic and non-local closure modeling via latent score-based
generative models", arXiv 2506.20771) learns two deterministic
autoencoders, one for the closure target ``H`` and one for the condition ``omega``
(``[B, 64, 64] -> [B, 16, 16]`` latents in the paper), and a score network on the target latent
conditioned on the condition latent. Everything here is network-agnostic: the encoders, decoders and
the latent score are plain pure functions (e.g. ``functools.partial(module.apply, params,
method=...)`` of any Flax modules), so this module imports no network code.

**Sampling** (``latent_sample``; paper B, "Sampling"): with ``z_omega = E_omega(omega)``,

    z_H ~ p(z_H | z_omega)   by any sampler of ``closurejax.diffusion.samplers`` run with
                              score(z_t, t) = s_theta(z_t, t, z_omega),
    H   = D_H(z_H).

The condition is encoded ONCE per call and closed over by the score, so the sampler's
``lax.scan`` body contains only the latent score network (no encoder work per step); the target
decoder runs once on the final latent. Shapes: ``omega [B, n, n]``, ``z_omega [B, *c]``,
``z_H [B, *latent_shape]``, ``H [B, n, n]``.

**Joint training loss** (``joint_latent_loss``; paper B, "Joint training"): for a batch
``(H, omega)`` with ``z_H = E_H(H)``, ``z_omega = E_omega(omega)``,

    L = w_H  MSE(D_H(z_H), H) + w_omega MSE(D_omega(z_omega), omega)
      + w_s  DSM(z_H | z_omega) + w_KL KL(z_H),

with the paper's weights ``(w_H, w_omega, w_s, w_KL) = (10, 0.1, 0.1, 0.01)``. ``MSE`` is the mean
over all elements; ``DSM`` is ``closurejax.diffusion.losses.dsm_loss`` on the latents ``z_H`` with
the score ``s_theta(., ., z_omega)`` (``lambda = sigma^2`` weighting: mean over the batch of the sum
over latent entries), and ``KL`` is the batch moment-matching penalty of ``batch_kl``:

    KL(z) = 1/2 mean_d (v_d + m_d^2 - 1 - log v_d),
    m_d = mean_b z_{b,d},   v_d = mean_b (z_{b,d} - m_d)^2,

the KL divergence ``KL(N(m_d, v_d) || N(0, 1))`` averaged over latent dimensions ``d`` of the
per-dimension Gaussian fitted to the batch. It is zero exactly when every latent dimension has batch
mean 0 and (population, ``ddof = 0``) variance 1, and positive otherwise.

**Gradients through the latents.** As in paper B's joint training, the DSM term is differentiated
through ``z_H`` into the target encoder and through ``z_omega`` into the condition encoder (no
``stop_gradient``). This carries a trivial-collapse risk: the DSM minimum for ``lambda = sigma^2``
is ``sum_d alpha^2 s_d^2 / (alpha^2 s_d^2 + sigma^2)`` for latent dimensions of spread ``s_d``
(``closurejax.diffusion.losses``), which tends to 0 as the encoder shrinks ``z_H`` to a constant.
The KL term counters it (``-log v_d -> inf`` as ``v_d -> 0``), and so does the reconstruction term
(a constant latent cannot be decoded into ``H``). ``batch_kl`` adds ``eps`` inside the log so a
collapsed batch gives a large finite penalty instead of ``inf``.

**Latent collapse at paper B's weights (closurejax issue 11).** ``dsm_loss`` SUMS over the latent
entries while ``batch_kl`` (by default) AVERAGES over them, so at a ``16 x 16`` latent the KL
term weighs 256 times less per entry than the weights ``(w_s, w_KL) = (0.1, 0.01)`` suggest,
and it does not hold the DSM term's pull towards small latents: jointly trained ``z_H`` shrink
to a spread (``latent_std``) far below the sampler's noise levels (0.023 in the CPU study). Two
options, defaults unchanged: ``kl_reduction="sum"`` reduces the KL like the DSM term (the same
ratio of the two per latent entry as any consistent reduction of both), and
``dsm_target_grad=False`` stops the DSM gradient at ``z_H``. On the tiny test study (16² -> 8x8
latents, same init, 400 Adam steps; tests/diffusion/test_latent_model.py) the spread falls from
0.37 to 0.08 at paper B's setting (0.07 after 1000 steps), and ends at 0.55 with
``kl_reduction="sum"`` (0.69 after 1000 steps), 0.81 with both options (0.90), and 0.36 with
``dsm_target_grad=False`` alone (1000 steps).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from closurejax.diffusion import losses
from closurejax.diffusion.samplers import SamplerConfig
from closurejax.diffusion.sde import SDE

__all__ = [
    "KL_REDUCTIONS",
    "PAPER_B_LOSS_WEIGHTS",
    "batch_kl",
    "latent_std",
    "joint_latent_loss",
    "latent_sample",
]

Array = jax.Array
EncodeFn = Callable[[Array], Array]
"""``encode(field [B, n, n]) -> z [B, ...]``."""
DecodeFn = Callable[[Array], Array]
"""``decode(z [B, ...]) -> field [B, n, n]``."""
LatentScoreFn = Callable[[Array, Array, Array], Array]
"""``latent_score_fn(z_t [B, *latent_shape], t [B], z_cond [B, ...]) -> [B, *latent_shape]``."""

PAPER_B_LOSS_WEIGHTS: tuple[float, float, float, float] = (10.0, 0.1, 0.1, 0.01)
"""Paper B's joint-loss weights ``(w_H, w_omega, w_s, w_KL)``."""

KL_REDUCTIONS = ("mean", "sum")
"""How ``batch_kl`` reduces over latent entries: ``"mean"`` (the default, closurejax's reading of
paper B) or ``"sum"`` (the reduction of ``losses.dsm_loss``, so ``w_s : w_KL`` weigh the two
terms per latent entry)."""


def _check_latent_shape(latent_shape: Sequence[int]) -> tuple[int, ...]:
    """``latent_shape`` as a tuple of positive ints (the per-sample latent shape, no batch axis)."""
    shape = tuple(latent_shape)
    if len(shape) < 1 or any(
        isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in shape
    ):
        raise ValueError(
            "latent_shape must be a non-empty tuple of positive ints (the per-sample latent "
            f"shape, without the batch axis), got {latent_shape!r}"
        )
    return shape


def _check_field(name: str, field: Array) -> int:
    """Check that ``field`` is ``[B, n, n]`` with ``B >= 1``; return ``B``."""
    shape = tuple(jnp.shape(field))
    if len(shape) != 3 or shape[0] < 1 or shape[1] != shape[2]:
        raise ValueError(f"{name} must be a [batch, n, n] field with batch >= 1, got shape {shape}")
    return shape[0]


def _check_batch(name: str, array: Array, batch: int) -> None:
    """Check that a function's output ``array`` has the leading batch axis ``batch``."""
    shape = tuple(jnp.shape(array))
    if len(shape) < 1 or shape[0] != batch:
        raise ValueError(f"{name} returned shape {shape}; expected a leading batch axis of {batch}")


def latent_sample(
    key: Array,
    encode_condition: EncodeFn,
    decode_target: DecodeFn,
    latent_score_fn: LatentScoreFn,
    sde: SDE,
    sampler: SamplerConfig,
    cond: Array,
    latent_shape: Sequence[int],
) -> Array:
    """One closure sample per condition by L-CDM sampling (paper B; module docstring).

    ``z_omega = encode_condition(cond)`` once, ``z_H`` from ``sampler`` in latent space with the
    score ``latent_score_fn(z_t, t, z_omega)``, then ``decode_target(z_H)`` once. Pure and
    jit-compilable (close over or mark static everything but ``key`` and ``cond``), and vmappable
    over ``key``; with the networks bound it has the call shape ``(key, cond) -> closure`` of
    ``ClosureModel.sample``.

    Args:
        key: PRNG key of the sampler (prior draw and step noise).
        encode_condition: ``cond [B, n, n] -> z_omega [B, ...]``.
        decode_target: ``z_H [B, *latent_shape] -> H [B, n', n']``.
        latent_score_fn: ``(z_t [B, *latent_shape], t [B], z_omega [B, ...]) -> [B,
            *latent_shape]``, the score ``grad log p_t(z_t | z_omega)``.
        sde: the forward SDE of the latent diffusion.
        sampler: which sampler and time grid (paper B: ``PAPER_B_SAMPLER``).
        cond: the condition ``[B, n, n]`` (paper B: the coarse vorticity).
        latent_shape: the per-sample latent shape, without the batch axis (paper B: ``(16, 16)``
            or ``(16, 16, 1)``, whatever ``decode_target`` takes).

    Returns:
        The decoded closure ``[B, n', n']``.
    """
    shape = _check_latent_shape(latent_shape)
    batch = _check_field("cond", cond)
    z_cond = encode_condition(cond)
    _check_batch("encode_condition", z_cond, batch)

    def score_fn(z: Array, t: Array) -> Array:
        return latent_score_fn(z, t, z_cond)

    z_target, _ = sampler.sample(key, score_fn, sde, (batch, *shape))
    out = decode_target(z_target)
    _check_batch("decode_target", out, batch)
    return out


def batch_kl(z: Array, eps: float = 1e-8, reduction: str = "mean") -> Array:
    """Batch moment-matching KL penalty of paper B (module docstring), a scalar.

    ``1/2 mean_d (v_d + m_d^2 - 1 - log(v_d + eps))`` with ``m_d``, ``v_d`` the mean and
    population variance of latent dimension ``d`` over the batch (``reduction="sum"``:
    ``sum_d`` instead of ``mean_d``, i.e. the mean times the number of latent entries). ``z:
    [B, ...]`` with ``B >= 2``; every non-batch entry is one latent dimension.
    """
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is invalid; allowed: {KL_REDUCTIONS}")
    if z.ndim < 2 or z.shape[0] < 2:
        raise ValueError(
            f"batch_kl needs latents [batch >= 2, ...] (moments are taken over the batch), "
            f"got shape {z.shape}"
        )
    flat = z.reshape(z.shape[0], -1)
    mean = jnp.mean(flat, axis=0)
    var = jnp.var(flat, axis=0)
    reduce = jnp.mean if reduction == "mean" else jnp.sum
    return 0.5 * reduce(var + mean**2 - 1.0 - jnp.log(var + eps))


def latent_std(z: Array) -> Array:
    """Spread of a batch of latents ``z [B, ...]`` (``B >= 2``), a scalar.

    ``sqrt(mean_d v_d)`` with ``v_d`` the population variance over the batch of latent entry
    ``d`` (the ``v_d`` of ``batch_kl``): 1 for latents matched to ``N(0, 1)``, and the number to
    compare with the sampler's noise levels ``sigma(t)`` (collapse: ``latent_std << sigma``).
    """
    if z.ndim < 2 or z.shape[0] < 2:
        raise ValueError(f"latent_std needs latents [batch >= 2, ...], got shape {z.shape}")
    return jnp.sqrt(jnp.mean(jnp.var(z.reshape(z.shape[0], -1), axis=0)))


def joint_latent_loss(
    key: Array,
    batch: Mapping[str, Array],
    *,
    encode_target: EncodeFn,
    decode_target: DecodeFn,
    encode_condition: EncodeFn,
    decode_condition: DecodeFn,
    latent_score_fn: LatentScoreFn,
    sde: SDE,
    t_sampler: losses.TSampler | None = None,
    weights: Sequence[float] = PAPER_B_LOSS_WEIGHTS,
    target_name: str = "target",
    condition_name: str = "omega",
    kl_eps: float = 1e-8,
    dsm_target_grad: bool = True,
    kl_reduction: str = "mean",
    dsm_weighting: str | Callable[[Array], Array] = "sigma2",
) -> tuple[Array, dict[str, Array]]:
    """Paper B's joint autoencoder + latent-score loss (module docstring), differentiable in all
    five functions' parameters (gradients of the DSM term flow through ``z_H`` and ``z_omega``).

    Args:
        key: PRNG key, passed whole to ``dsm_loss`` (the only random term).
        batch: ``{target_name: H [B, n, n], condition_name: omega [B, n, n]}`` (normalised as the
            networks expect).
        encode_target, decode_target: the target autoencoder, ``H -> z_H [B, ...] -> H_hat``.
        encode_condition, decode_condition: the condition autoencoder, ``omega -> z_omega ->
            omega_hat``.
        latent_score_fn: ``(z_t, t [B], z_omega) -> score`` shaped like ``z_H``.
        sde: forward SDE of the latent diffusion.
        t_sampler: ``(key, B) -> t [B]``; default ``U[sde.t_min, sde.t_max]`` (``dsm_loss``).
        weights: ``(w_H, w_omega, w_s, w_KL)``, non-negative; paper B's ``(10, 0.1, 0.1, 0.01)``.
        target_name, condition_name: keys of ``batch``.
        kl_eps: ``eps`` of ``batch_kl``.
        kl_reduction: ``reduction`` of ``batch_kl`` (`KL_REDUCTIONS`; module docstring, collapse).
        dsm_target_grad: paper B (``True``): the DSM term is differentiated through ``z_H`` into
            the target encoder. ``False``: ``z_H`` enters the DSM term under ``stop_gradient``,
            so only the reconstruction and KL terms shape the target latent (the DSM term still
            trains the score and, through ``z_omega``, the condition encoder): the DSM term can
            no longer lower itself by shrinking ``z_H`` (module docstring, collapse).
        dsm_weighting: ``weighting`` of the DSM term (``losses.dsm_loss``; paper B: ``"sigma2"``).

    Returns:
        ``(loss, aux)``: the weighted scalar loss and the unweighted scalar terms
        ``{"mse_target", "mse_condition", "dsm", "kl"}``.
    """
    w = tuple(weights)
    if len(w) != 4 or any(not isinstance(v, numbers.Real) or not v >= 0 for v in w):
        raise ValueError(
            f"weights must be four non-negative numbers (w_H, w_omega, w_s, w_KL), got {weights!r}"
        )
    for name in (target_name, condition_name):
        if name not in batch:
            raise ValueError(f"batch has no field {name!r}; got fields {sorted(batch)}")
    target, cond = batch[target_name], batch[condition_name]
    b_target = _check_field(f"batch[{target_name!r}]", target)
    b_cond = _check_field(f"batch[{condition_name!r}]", cond)
    if b_target != b_cond:
        raise ValueError(
            f"batch[{target_name!r}] has batch {b_target} but batch[{condition_name!r}] has "
            f"{b_cond}: target and condition must be paired"
        )

    z_target = encode_target(target)
    z_cond = encode_condition(cond)
    _check_batch("encode_target", z_target, b_target)
    _check_batch("encode_condition", z_cond, b_target)
    target_hat = decode_target(z_target)
    cond_hat = decode_condition(z_cond)
    for name, recon, ref in (
        ("decode_target", target_hat, target),
        ("decode_condition", cond_hat, cond),
    ):
        if recon.shape != ref.shape:
            raise ValueError(f"{name} returned shape {recon.shape}, expected {ref.shape}")

    def score_fn(z: Array, t: Array) -> Array:
        return latent_score_fn(z, t, z_cond)

    terms = {
        "mse_target": jnp.mean((target_hat - target) ** 2),
        "mse_condition": jnp.mean((cond_hat - cond) ** 2),
        "dsm": losses.dsm_loss(
            key,
            z_target if dsm_target_grad else jax.lax.stop_gradient(z_target),
            score_fn,
            sde,
            t_sampler,
            dsm_weighting,
        ),
        "kl": batch_kl(z_target, kl_eps, kl_reduction),
    }
    total = sum(
        weight * terms[name]
        for weight, name in zip(w, ("mse_target", "mse_condition", "dsm", "kl"), strict=True)
    )
    return total, terms
