"""Forward SDEs of score-based diffusion models: variance exploding (VE) and preserving (VP).

A forward SDE ``dx = f(x, t) dt + g(t) dw`` (Song et al. 2021, "Score-based generative modeling
through stochastic differential equations") with an affine drift has Gaussian transition kernels

    x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I),

with mean coefficient ``alpha(t)`` and marginal standard deviation ``sigma(t)``. Both SDEs here are
frozen dataclasses whose fields are static: they are hashable (usable as ``static_argnames`` of
``jax.jit``) and also registered as pytrees with no leaves, so they can be passed as ordinary jit
arguments or closed over.

**VE SDE** (papers A and B, arXiv 2408.02965, the diffusion model; Song et al.
2021, Appendix B): ``dx = sigma_0^t dw`` with ``sigma_0 = 26`` (paper A) or ``30`` (paper B):

    f(x, t) = 0,   g(t) = sigma_0^t,   alpha(t) = 1,
    sigma(t)^2 = int_0^t sigma_0^{2s} ds = (sigma_0^{2t} - 1) / (2 ln sigma_0),

so ``sigma(0) = 0`` and ``g(t)^2 = d sigma(t)^2 / dt``. The prior at any horizon ``T`` is taken to
be ``N(0, sigma(T)^2)``, the law of ``x_T`` when the data are negligible against the noise.

**How much noise the papers' horizons actually add.** ``sigma(t)`` for ``sigma_0 = 26``:
``sigma(1e-3) = 0.0317``, ``sigma(0.1) = 0.375``, ``sigma(0.4) = 1.39``, ``sigma(1) = 10.18``,
``sigma(2) = 264.8``; for ``sigma_0 = 30``: ``sigma(0.4) = 1.44``. Paper A samples from
``t_max = 0.1``, i.e. from the prior ``N(0, 0.375^2)``; the true marginal there is the data law
convolved with ``N(0, 0.375^2)``. The prior is therefore a good start only if the data (the
*conditional* law of the closure given the conditions) have mean and spread well below 0.375 in
the units the network sees. Otherwise the sampler starts from the wrong law and the exact reverse
dynamics cannot undo it: for a Gaussian target ``N(mu, s^2)`` the exact probability-flow ODE maps
the prior to ``N(mu (1 - c), sigma_T^2 c^2)`` with ``c = s / sqrt(s^2 + sigma_T^2)``; with
``s = 1`` and ``sigma_T = 0.375`` that is a std of ``0.35`` instead of ``1`` (see
``closurejax.diffusion.samplers`` and its tests, which check this formula). ``prior_sample``
takes a ``data_std`` to use ``N(0, alpha^2 data_std^2 + sigma^2)`` instead.

**VP SDE** (Song et al. 2021, eq. 11; continuous DDPM): ``beta(t) = beta_min + t (beta_max -
beta_min)``,

    f(x, t) = -1/2 beta(t) x,   g(t) = sqrt(beta(t)),
    alpha(t) = exp(-1/2 B(t)),   B(t) = int_0^t beta = beta_min t + 1/2 (beta_max - beta_min) t^2,
    sigma(t)^2 = 1 - alpha(t)^2.

**Reverse-time dynamics** (Song et al. 2021, eqs. 6 and 13), with ``score = grad_x log p_t(x)``:

    reverse SDE:          dx = [f(x, t) - g(t)^2 score] dt + g(t) dw_bar,
    probability-flow ODE: dx = [f(x, t) - 1/2 g(t)^2 score] dt,

both integrated backwards in ``t``; ``reverse_drift`` returns the bracket.

**Log-SNR** (Lu et al. 2022, DPM-Solver): ``lambda(t) = log(alpha(t) / sigma(t))``, strictly
decreasing, ``+inf`` at ``t = 0``; its inverse ``t(lambda)`` is closed-form for both SDEs:

    VE: t = log1p(2 ln(sigma_0) e^{-2 lambda}) / (2 ln sigma_0),
    VP: B = log1p(e^{-2 lambda}),
        t = 2 B / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) B)).

``noise_level(t) = sigma(t) / alpha(t) = exp(-lambda(t))`` is the noise std of the rescaled state
``x / alpha`` (the ``sigma`` of Karras et al. 2022); for VE it is ``sigma(t)`` itself.

Shapes: times ``t`` are scalars or ``[B]``; states ``x`` are ``[B, ...]``. Coefficients of a
``[B]`` time are broadcast against the trailing axes of ``x``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["SDE", "VESDE", "VPSDE", "broadcast_to_state"]

Array = jax.Array


def _as_time(t: ArrayLike) -> Array:
    """``t`` as a floating JAX array (integers are promoted to the default float dtype)."""
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return t


def broadcast_to_state(c: ArrayLike, x: Array) -> Array:
    """Reshape a coefficient ``c`` (scalar or ``[B]``) to broadcast against a state ``x [B, ...]``.

    A scalar is returned unchanged; a ``[B]`` array becomes ``[B, 1, ..., 1]`` with ``x.ndim``
    axes. Raises ``ValueError`` when the leading axes of ``c`` do not match those of ``x``.
    """
    c = jnp.asarray(c)
    if c.ndim == 0:
        return c
    if c.ndim > x.ndim or c.shape != x.shape[: c.ndim]:
        raise ValueError(
            f"a time/coefficient of shape {c.shape} does not match the leading axes of a state of "
            f"shape {x.shape}; pass a scalar or one value per batch element"
        )
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def _check_times(t_min: float, t_max: float, name: str) -> None:
    """Validate a ``0 < t_min < t_max`` time window (Python numbers only)."""
    for field, value in (("t_min", t_min), ("t_max", t_max)):
        if not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name}.{field} must be a finite real number, got {value!r}")
    if not 0.0 < t_min < t_max:
        raise ValueError(f"{name} needs 0 < t_min < t_max, got t_min={t_min!r}, t_max={t_max!r}")


@runtime_checkable
class SDE(Protocol):
    """What samplers and losses need from a forward SDE (implemented by ``VESDE`` and ``VPSDE``)."""

    t_min: float
    t_max: float

    def mean_coeff(self, t: ArrayLike) -> Array: ...

    def std(self, t: ArrayLike) -> Array: ...

    def marginal(self, t: ArrayLike) -> tuple[Array, Array]: ...

    def drift(self, x: Array, t: ArrayLike) -> Array: ...

    def diffusion(self, t: ArrayLike) -> Array: ...

    def prior_sample(
        self, key: Array, shape: tuple[int, ...], t: ArrayLike | None = None, data_std: float = 0.0
    ) -> Array: ...

    def reverse_drift(
        self, x: Array, t: ArrayLike, score: Array, probability_flow: bool = False
    ) -> Array: ...

    def log_snr(self, t: ArrayLike) -> Array: ...

    def t_from_log_snr(self, log_snr: ArrayLike) -> Array: ...

    def noise_level(self, t: ArrayLike) -> Array: ...

    def t_from_noise_level(self, noise_level: ArrayLike) -> Array: ...


class _SDEBase:
    """Methods shared by both SDEs, written with ``mean_coeff``, ``std``, ``drift``, ``g``."""

    t_min: float
    t_max: float

    def marginal(self: SDE, t: ArrayLike) -> tuple[Array, Array]:
        """``(alpha(t), sigma(t))``: ``x_t | x_0 ~ N(alpha x_0, sigma^2)``, each shaped like t."""
        return self.mean_coeff(t), self.std(t)

    def prior_sample(
        self: SDE,
        key: Array,
        shape: tuple[int, ...],
        t: ArrayLike | None = None,
        data_std: float = 0.0,
    ) -> Array:
        """A ``[shape]`` draw from ``N(0, alpha(t)^2 data_std^2 + sigma(t)^2)``, t_max if t is None.

        ``data_std = 0`` (default) is the papers' prior ``N(0, sigma(t)^2)`` (the law of ``x_t``
        when the data are negligible against the noise); for the VP SDE with unit-variance data,
        ``data_std = 1`` gives Song et al.'s ``N(0, 1)`` exactly. ``t`` must be a scalar.
        """
        t = _as_time(self.t_max if t is None else t)
        if t.ndim != 0:
            raise ValueError(f"prior_sample needs a scalar time, got shape {t.shape}")
        alpha, sigma = self.marginal(t)
        std = jnp.sqrt(sigma**2 + (alpha * data_std) ** 2)
        return std * jax.random.normal(key, shape, dtype=t.dtype)

    def reverse_drift(
        self: SDE, x: Array, t: ArrayLike, score: Array, probability_flow: bool = False
    ) -> Array:
        """Drift of the reverse-time SDE ``f - g^2 score`` or of the probability-flow ODE
        ``f - 1/2 g^2 score`` (Song et al. 2021, eqs. 6, 13). ``x, score: [B, ...]``, ``t``: scalar
        or ``[B]``; returns ``[B, ...]``. Integrate it with a negative ``dt``.
        """
        g2 = broadcast_to_state(self.diffusion(t) ** 2, x)
        weight = 0.5 if probability_flow else 1.0
        return self.drift(x, t) - weight * g2 * score

    def noise_level(self: SDE, t: ArrayLike) -> Array:
        """``sigma(t) / alpha(t) = exp(-lambda(t))``: noise std of ``x / alpha`` (Karras' sigma)."""
        return jnp.exp(-self.log_snr(t))

    def t_from_noise_level(self: SDE, noise_level: ArrayLike) -> Array:
        """Inverse of ``noise_level``: the time at which ``sigma / alpha == noise_level``."""
        return self.t_from_log_snr(-jnp.log(_as_time(noise_level)))


@dataclasses.dataclass(frozen=True)
class VESDE(_SDEBase):
    """Variance-exploding SDE ``dx = sigma^t dw`` of papers A/B (module docstring for the formulas).

    Attributes:
        sigma: the base ``sigma_0 > 1`` (26 in paper A, 30 in paper B).
        t_min: smallest time at which a score is evaluated (samplers' and losses' default).
        t_max: horizon: the samplers' default starting time and the losses' default largest time.
            Set it to the sampler's ``t_max`` (0.1 in paper A, 0.4 in paper B) so that training and
            sampling use the same range by default.
    """

    sigma: float = 26.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.sigma, numbers.Real) or not 1.0 < self.sigma < math.inf:
            raise ValueError(f"VESDE.sigma must be a finite number > 1, got {self.sigma!r}")
        _check_times(self.t_min, self.t_max, "VESDE")

    @property
    def _log_sigma(self) -> float:
        return math.log(self.sigma)

    def mean_coeff(self, t: ArrayLike) -> Array:
        """``alpha(t) = 1``, shape of ``t``."""
        return jnp.ones_like(_as_time(t))

    def std(self, t: ArrayLike) -> Array:
        """``sigma(t) = sqrt((sigma_0^{2t} - 1) / (2 ln sigma_0))`` (``expm1`` for small ``t``)."""
        t = _as_time(t)
        ln_s = self._log_sigma
        return jnp.sqrt(jnp.expm1(2.0 * ln_s * t) / (2.0 * ln_s))

    def drift(self, x: Array, t: ArrayLike) -> Array:
        """``f(x, t) = 0``, shape of ``x``."""
        del t
        return jnp.zeros_like(x)

    def diffusion(self, t: ArrayLike) -> Array:
        """``g(t) = sigma_0^t``, shape of ``t``."""
        return jnp.exp(self._log_sigma * _as_time(t))

    def log_snr(self, t: ArrayLike) -> Array:
        """``lambda(t) = -log sigma(t) = -1/2 log((sigma_0^{2t} - 1) / (2 ln sigma_0))``."""
        t = _as_time(t)
        ln_s = self._log_sigma
        return -0.5 * jnp.log(jnp.expm1(2.0 * ln_s * t) / (2.0 * ln_s))

    def t_from_log_snr(self, log_snr: ArrayLike) -> Array:
        """``t(lambda) = log1p(2 ln(sigma_0) e^{-2 lambda}) / (2 ln sigma_0)``."""
        lam = _as_time(log_snr)
        ln_s = self._log_sigma
        return jnp.log1p(2.0 * ln_s * jnp.exp(-2.0 * lam)) / (2.0 * ln_s)


@dataclasses.dataclass(frozen=True)
class VPSDE(_SDEBase):
    """Variance-preserving SDE ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw`` (Song et al. 2021).

    Attributes:
        beta_min, beta_max: ``beta(t) = beta_min + t (beta_max - beta_min)``, ``0 <= beta_min <=
            beta_max``, ``beta_max > 0``.
        t_min, t_max: as for ``VESDE`` (defaults ``1e-3`` and ``1``).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def __post_init__(self) -> None:
        for field in ("beta_min", "beta_max"):
            value = getattr(self, field)
            if not isinstance(value, numbers.Real) or not 0.0 <= value < math.inf:
                raise ValueError(f"VPSDE.{field} must be a finite number >= 0, got {value!r}")
        if not (self.beta_max >= self.beta_min and self.beta_max > 0):
            raise ValueError(
                "VPSDE needs beta_max >= beta_min and beta_max > 0, got "
                f"beta_min={self.beta_min!r}, beta_max={self.beta_max!r}"
            )
        _check_times(self.t_min, self.t_max, "VPSDE")

    def beta(self, t: ArrayLike) -> Array:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return self.beta_min + _as_time(t) * (self.beta_max - self.beta_min)

    def integrated_beta(self, t: ArrayLike) -> Array:
        """``B(t) = int_0^t beta = beta_min t + 1/2 (beta_max - beta_min) t^2``."""
        t = _as_time(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def mean_coeff(self, t: ArrayLike) -> Array:
        """``alpha(t) = exp(-1/2 B(t))``."""
        return jnp.exp(-0.5 * self.integrated_beta(t))

    def std(self, t: ArrayLike) -> Array:
        """``sigma(t) = sqrt(1 - alpha(t)^2) = sqrt(-expm1(-B(t)))``."""
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))

    def drift(self, x: Array, t: ArrayLike) -> Array:
        """``f(x, t) = -1/2 beta(t) x``; ``x: [B, ...]``, ``t`` scalar or ``[B]``."""
        return -0.5 * broadcast_to_state(self.beta(t), x) * x

    def diffusion(self, t: ArrayLike) -> Array:
        """``g(t) = sqrt(beta(t))``."""
        return jnp.sqrt(self.beta(t))

    def log_snr(self, t: ArrayLike) -> Array:
        """``lambda(t) = log(alpha / sigma) = -1/2 B(t) - 1/2 log(-expm1(-B(t)))``."""
        big_b = self.integrated_beta(t)
        return -0.5 * big_b - 0.5 * jnp.log(-jnp.expm1(-big_b))

    def t_from_log_snr(self, log_snr: ArrayLike) -> Array:
        """Invert ``lambda``: ``B = log1p(e^{-2 lambda})``, then the positive root of
        ``1/2 (beta_max - beta_min) t^2 + beta_min t = B`` written as
        ``t = 2 B / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) B))`` (no cancellation).
        """
        lam = _as_time(log_snr)
        big_b = jax.nn.softplus(-2.0 * lam)
        slope = self.beta_max - self.beta_min
        return 2.0 * big_b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * slope * big_b))


jax.tree_util.register_dataclass(VESDE, data_fields=[], meta_fields=["sigma", "t_min", "t_max"])
jax.tree_util.register_dataclass(
    VPSDE, data_fields=[], meta_fields=["beta_min", "beta_max", "t_min", "t_max"]
)
