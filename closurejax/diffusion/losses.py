"""Denoising score matching and the parameterisations that turn a network's output into a score.

**Denoising score matching** (Vincent 2011; Song et al. 2021, eq. 7; papers A/B, see
arXiv 2408.02965, the diffusion model). For data ``x_0 [B, ...]``, times
``t ~ t_sampler`` (``[B]``), ``z ~ N(0, I)`` and ``x_t = alpha(t) x_0 + sigma(t) z``, the
conditional score is ``grad log p(x_t | x_0) = -z / sigma(t)`` and

    L = mean_b  lambda(t_b) sum_pixels (score(x_t, t)_b + z_b / sigma(t_b))^2.

With the papers' weighting ``lambda = sigma^2`` the summand is ``(sigma score + z)^2`` (computed in
that form, which stays finite as ``sigma -> 0``). The minimiser over all functions is the true
score of the perturbed marginal ``p_t``, but the minimum is **not zero**: for a score ``s``,

    E[lambda |s + z / sigma|^2] = lambda E|s - grad log p_t|^2 + (irreducible term),

and for Gaussian data ``N(mu, s_d^2)`` per pixel with the ``sigma^2`` weighting the irreducible term
is ``alpha^2 s_d^2 / (alpha^2 s_d^2 + sigma^2)`` per pixel (tested against this).

**Which times to train on.** Paper A trains with ``t ~ U[2e-5, 2]`` (``PAPER_A_TRAIN_T_RANGE``)
but samples only ``t in [1e-3, 0.1]``: only ``(0.1 - 1e-3) / (2 - 2e-5) = 4.95 %`` of its
training times fall where the sampler ever evaluates the network, and ``t = 2`` means
``sigma = 265`` for ``sigma_0 = 26``. The default here is the *sampler range*: ``t ~ U[sde.t_min,
sde.t_max]``, the window every sampler in ``closurejax.diffusion.samplers`` uses by default, so
setting ``sde.t_max`` to the sampling horizon (0.1 in paper A, 0.4 in paper B) makes training and
sampling agree. The paper's choice is available as ``uniform_t(*PAPER_A_TRAIN_T_RANGE)``.

**Parameterisations** (``make_score_fn``), for a network ``net_fn(x, tau) -> F`` with ``x, F:
[B, ...]`` and noise input ``tau: [B]``:

* ``"score_over_sigma"`` (papers A/B): ``score = F(x, tau) / sigma(t)``.
* ``"edm"`` (Karras et al. 2022, Table 1, "preconditioning"): with ``x_hat = x / alpha`` and
  ``s = sigma / alpha`` (the VE ``sigma``; ``alpha = 1`` for VE),

      c_skip = s_d^2 / (s^2 + s_d^2),   c_out = s s_d / sqrt(s^2 + s_d^2),
      c_in = 1 / sqrt(s^2 + s_d^2),     c_noise = 1/4 ln s,
      D(x_hat) = c_skip x_hat + c_out F(c_in x_hat, tau),
      score = (alpha D - x) / sigma^2        (= (D - x) / sigma^2 for VE),

  where ``s_d = sigma_data`` is the data std. ``D`` estimates ``E[x_0 | x_t]``.

The noise input ``tau`` the network receives is ``t`` (``noise_input="t"``, the papers: the FNO
embeds ``t`` with Gaussian Fourier features) or ``c_noise = 1/4 log(sigma / alpha)``
(``noise_input="c_noise"``, EDM). Training and sampling must use the same choice; building both
score functions with ``make_score_fn`` and the same arguments guarantees it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

from closurejax.diffusion.sde import SDE, broadcast_to_state

__all__ = [
    "NOISE_INPUTS",
    "PAPER_A_TRAIN_T_RANGE",
    "PARAMETERIZATIONS",
    "LOSS_WEIGHTINGS",
    "WEIGHTINGS",
    "dsm_loss",
    "edm_preconditioning",
    "edm_weighting",
    "log_sigma_t",
    "make_score_fn",
    "named_weighting",
    "sampler_range_t",
    "uniform_t",
]

Array = jax.Array
ScoreFn = Callable[[Array, Array], Array]
"""``score_fn(x [B, ...], t [B]) -> score [B, ...]``."""
NetFn = Callable[[Array, Array], Array]
"""``net_fn(x [B, ...], tau [B]) -> F [B, ...]``: the raw network output."""
TSampler = Callable[[Array, int], Array]
"""``t_sampler(key, batch) -> t [batch]``."""

PAPER_A_TRAIN_T_RANGE: tuple[float, float] = (2e-5, 2.0)
"""Paper A's training times ``t ~ U[2e-5, 2]`` (it samples only ``[1e-3, 0.1]``)."""

PARAMETERIZATIONS: tuple[str, ...] = ("score_over_sigma", "edm")
NOISE_INPUTS: tuple[str, ...] = ("t", "c_noise")
WEIGHTINGS: tuple[str, ...] = ("sigma2", "none")
LOSS_WEIGHTINGS: tuple[str, ...] = ("sigma2", "edm")
"""The weightings a config names (`diffusion.loss_weighting`; `named_weighting`)."""


def _check_range(t_min: float, t_max: float, what: str) -> None:
    if isinstance(t_min, numbers.Real) and isinstance(t_max, numbers.Real):
        if not 0.0 < t_min < t_max:
            raise ValueError(f"{what} needs 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")


def uniform_t(t_min: float, t_max: float) -> TSampler:
    """``t ~ U[t_min, t_max]``; returns ``t_sampler(key, batch) -> [batch]``."""
    _check_range(t_min, t_max, "uniform_t")

    def sample(key: Array, batch: int) -> Array:
        return jax.random.uniform(key, (batch,), minval=t_min, maxval=t_max)

    return sample


def log_sigma_t(t_min: float, t_max: float, sde: SDE) -> TSampler:
    """``lambda(t)`` uniform between ``lambda(t_max)`` and ``lambda(t_min)`` (log-uniform noise
    level, the spacing of the ``log_sigma`` schedule); returns ``t_sampler(key, batch) -> [batch]``.
    """
    _check_range(t_min, t_max, "log_sigma_t")

    def sample(key: Array, batch: int) -> Array:
        lam_lo = sde.log_snr(t_max)
        lam_hi = sde.log_snr(t_min)
        lam = jax.random.uniform(key, (batch,), minval=lam_lo, maxval=lam_hi)
        return sde.t_from_log_snr(lam)

    return sample


def sampler_range_t(
    sde: SDE,
    t_min: float | None = None,
    t_max: float | None = None,
    spacing: Literal["uniform", "log_sigma"] = "uniform",
) -> TSampler:
    """Times from the window the sampler uses: ``[t_min, t_max]``, by default
    ``[sde.t_min, sde.t_max]`` (the samplers' defaults), drawn uniformly in ``t`` or in
    ``log sigma`` (``spacing``).
    """
    lo = sde.t_min if t_min is None else t_min
    hi = sde.t_max if t_max is None else t_max
    if spacing == "uniform":
        return uniform_t(lo, hi)
    if spacing == "log_sigma":
        return log_sigma_t(lo, hi, sde)
    raise ValueError(f"spacing must be 'uniform' or 'log_sigma', got {spacing!r}")


def edm_preconditioning(noise_level: Array, sigma_data: float) -> tuple[Array, Array, Array, Array]:
    """Karras et al. (2022) preconditioning ``(c_skip, c_out, c_in, c_noise)`` at noise level ``s``
    (``sigma / alpha``; module docstring). For data of std ``sigma_data``, ``c_in x_hat`` and the
    effective target ``(x_0 - c_skip x_hat) / c_out`` both have unit variance. Shapes follow
    ``noise_level``.
    """
    s = jnp.asarray(noise_level)
    sd2 = sigma_data**2
    c_skip = sd2 / (s**2 + sd2)
    c_out = s * sigma_data / jnp.sqrt(s**2 + sd2)
    c_in = 1.0 / jnp.sqrt(s**2 + sd2)
    c_noise = 0.25 * jnp.log(s)
    return c_skip, c_out, c_in, c_noise


def edm_weighting(sde: SDE, sigma_data: float) -> Callable[[Array], Array]:
    """The DSM weighting that equals Karras et al.'s ``lambda(s) = (s^2 + s_d^2) / (s s_d)^2`` on
    ``|D - x_0|^2``: ``w(t) = sigma^2 (s^2 + s_d^2) / s_d^2`` on ``|score + z / sigma|^2`` (since
    ``score + z / sigma = alpha (D - x_0) / sigma^2``). Pass it as ``dsm_loss(weighting=...)``.
    """

    def weight(t: Array) -> Array:
        s = sde.noise_level(t)
        return sde.std(t) ** 2 * (s**2 + sigma_data**2) / sigma_data**2

    return weight


def named_weighting(
    name: str, sde: SDE, sigma_data: float
) -> Literal["sigma2"] | Callable[[Array], Array]:
    """The ``dsm_loss`` weighting a config names: ``"sigma2"`` (the papers' ``lambda = sigma^2``,
    i.e. ``|D - x_0|^2 / s^2``: the error of the denoiser ``D`` relative to the noise) or ``"edm"``
    (``edm_weighting``: ``|D - x_0|^2 (1 / s_d^2 + 1 / s^2)``, which with EDM preconditioning
    gives the network's output the same unit weight at every noise level; Karras et al. 2022,
    Sec. 5). Against ``"sigma2"``, ``"edm"`` weighs a noise level ``s`` by ``1 + s^2 / s_d^2``
    more: where ``s >> s_d`` the denoiser must predict ``E[x_0 | condition]``, the mean of the
    ensemble, which ``"sigma2"`` leaves almost unweighted."""
    if name not in LOSS_WEIGHTINGS:
        raise ValueError(f"loss weighting must be one of {LOSS_WEIGHTINGS}, got {name!r}")
    if name == "sigma2":
        return "sigma2"
    if not (isinstance(sigma_data, numbers.Real) and sigma_data > 0):
        raise ValueError(f"sigma_data must be a number > 0, got {sigma_data!r}")
    return edm_weighting(sde, float(sigma_data))


def make_score_fn(
    net_fn: NetFn,
    sde: SDE,
    parameterization: Literal["score_over_sigma", "edm"] = "score_over_sigma",
    sigma_data: float = 0.5,
    noise_input: Literal["t", "c_noise"] = "t",
) -> ScoreFn:
    """Wrap a raw network ``net_fn(x, tau) -> F`` into ``score_fn(x [B, ...], t [B]) -> [B, ...]``.

    Args:
        net_fn: the network with its parameters closed over (e.g. ``partial(model.apply, params,
            cond=...)``).
        sde: the forward SDE (gives ``alpha(t)`` and ``sigma(t)``).
        parameterization: ``"score_over_sigma"`` (papers) or ``"edm"`` (module docstring).
        sigma_data: data std ``s_d`` of the EDM preconditioning (unused otherwise).
        noise_input: what the network receives as ``tau``: ``t`` or ``c_noise = 1/4 log(sigma /
            alpha)``. Use the same value for training and sampling.
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )
    if noise_input not in NOISE_INPUTS:
        raise ValueError(f"noise_input must be one of {NOISE_INPUTS}, got {noise_input!r}")
    if parameterization == "edm" and not (isinstance(sigma_data, numbers.Real) and sigma_data > 0):
        raise ValueError(f"sigma_data must be a number > 0, got {sigma_data!r}")

    def tau(t: Array) -> Array:
        return t if noise_input == "t" else 0.25 * jnp.log(sde.noise_level(t))

    def score_over_sigma(x: Array, t: Array) -> Array:
        return net_fn(x, tau(t)) / broadcast_to_state(sde.std(t), x)

    def edm(x: Array, t: Array) -> Array:
        alpha, sigma = sde.marginal(t)
        c_skip, c_out, c_in, _ = edm_preconditioning(sigma / alpha, sigma_data)
        a, sg = broadcast_to_state(alpha, x), broadcast_to_state(sigma, x)
        x_hat = x / a
        out = net_fn(broadcast_to_state(c_in, x) * x_hat, tau(t))
        denoised = broadcast_to_state(c_skip, x) * x_hat + broadcast_to_state(c_out, x) * out
        return (a * denoised - x) / sg**2

    return score_over_sigma if parameterization == "score_over_sigma" else edm


def dsm_loss(
    key: Array,
    x0: Array,
    score_fn: ScoreFn,
    sde: SDE,
    t_sampler: TSampler | None = None,
    weighting: Literal["sigma2", "none"] | Callable[[Array], Array] = "sigma2",
) -> Array:
    """Denoising score-matching loss (module docstring), a scalar.

    Args:
        key: PRNG key (split into the time and noise draws).
        x0: clean data ``[B, ...]``.
        score_fn: ``score_fn(x_t [B, ...], t [B]) -> [B, ...]`` (e.g. from ``make_score_fn``).
        sde: the forward SDE.
        t_sampler: ``(key, B) -> t [B]``; default ``sampler_range_t(sde)``, i.e.
            ``U[sde.t_min, sde.t_max]``.
        weighting: ``"sigma2"`` (``lambda = sigma(t)^2``, papers), ``"none"`` (``lambda = 1``) or a
            callable ``t [B] -> lambda [B]`` (e.g. ``edm_weighting``).

    Returns:
        ``mean_b lambda(t_b) sum_pixels (score + z / sigma)^2``.
    """
    if x0.ndim < 1:
        raise ValueError(f"x0 must have a batch axis, got shape {x0.shape}")
    if not (callable(weighting) or weighting in WEIGHTINGS):
        raise ValueError(f"weighting must be one of {WEIGHTINGS} or a callable, got {weighting!r}")
    sampler = sampler_range_t(sde) if t_sampler is None else t_sampler
    t_key, z_key = jax.random.split(key)
    batch = x0.shape[0]
    t = sampler(t_key, batch)
    z = jax.random.normal(z_key, x0.shape, x0.dtype)
    alpha, sigma = sde.marginal(t)
    sigma_b = broadcast_to_state(sigma, x0)
    x_t = broadcast_to_state(alpha, x0) * x0 + sigma_b * z
    score = score_fn(x_t, t)
    axes = tuple(range(1, x0.ndim))
    if weighting == "sigma2":
        per_sample = jnp.sum((sigma_b * score + z) ** 2, axis=axes)
    else:
        per_sample = jnp.sum((score + z / sigma_b) ** 2, axis=axes)
        if callable(weighting):
            per_sample = weighting(t) * per_sample
    return jnp.mean(per_sample)
