"""Reverse-time samplers for score-based diffusion models, network-agnostic.

A score function is any ``score_fn(x [B, ...], t [B]) -> [B, ...]`` approximating
``grad_x log p_t(x)`` (see ``closurejax.diffusion.losses.make_score_fn``). Every sampler here has
the signature

    sampler(key, score_fn, sde, shape, *, num_steps=10, t_min=None, t_max=None,
            schedule="karras", rho=7.0, final_zero=True, x_init=None, prior_data_std=0.0,
            **sampler_specific) -> (x_0 [shape], nfe)

walks the decreasing time grid ``t_0 = t_max > ... > t_N`` of ``closurejax.diffusion.schedules``
(default: the papers' Karras rho = 7 grid from ``t_max`` to ``t_min`` and a last step to 0;
``t_min, t_max`` default to ``sde.t_min, sde.t_max``) with ``lax.scan``, and returns the sample
and the number of score evaluations ``nfe``, a static Python ``int`` (under ``jax.jit`` return or
use only the array; ``nfe`` is known before the call, see ``SamplerConfig.nfe``). The state starts
at ``x_init`` if given (``[shape]``; the key is then used only for the sampler's own noise), else
from ``sde.prior_sample(key, shape, t_max, prior_data_std)``, i.e. ``N(0, sigma(t_max)^2)`` for VE
(papers A/B) and its VP analogue ``N(0, sigma(t_max)^2)`` (``= N(0, 1)`` at ``t_max = 1`` to 5e-5;
``prior_data_std = 1`` gives exactly ``N(0, 1)`` for unit-variance data).

The last step of every sampler to ``t = 0`` is noiseless and uses the score at ``t_min``, as in the
papers ("then a last noiseless step to 0", arXiv 2408.02965, the diffusion model).

Samplers (``dt = t_{i+1} - t_i < 0``, ``f`` the drift, ``g`` the diffusion, ``s`` the score):

* ``euler_maruyama`` (papers A/B): ``x <- x + (f - g^2 s) dt + g sqrt(-dt) z``, ``z ~ N(0, I)``
  (no noise on the last step). ``nfe = N``.
* ``predictor_corrector`` (Song et al. 2021, Algorithms 4 (VE) and 5 (VP)): per step,
  ``corrector_steps`` Langevin steps at ``t_i``, ``x <- x + eps s + sqrt(2 eps) z`` with
  ``eps = 2 (snr |z| / |s|)^2``, then a predictor step to ``t_{i+1}``: ``"euler_maruyama"`` or
  ``"reverse_diffusion"``: with ``a = alpha(t_i) / alpha(t_{i+1})`` and
  ``G^2 = sigma(t_i)^2 - a^2 sigma(t_{i+1})^2`` (the exact forward transition
  ``x_{t_i} = a x_{t_{i+1}} + G z``), ``x <- (x + G^2 s) / a + G z``. The mean is exactly
  ``E[x_{t_{i+1}} | x_{t_i}]`` (Tweedie's formula for that transition). For VE (``a = 1``) this is
  Song et al.'s Algorithm 4, ``x + (sigma_i^2 - sigma_{i+1}^2) s + G z``. For VP it matches
  Algorithm 5's ``(2 - a) x + G^2 s`` to first order in the step and is better on the large early
  steps of a Karras grid (no corrector, 100 steps from ``t = 1``, Gaussian target: std 3.8 % too
  large against 5.3 % with ``2 - a``; both are first-order).
  The corrector comes first in each step, as in Song et al.'s code (so it never runs at ``t = 0``),
  which is Algorithm 4/5 with one extra correction at ``t_max`` and none after the final predictor
  step. ``nfe = N (1 + corrector_steps)``. Norms ``|z|``, ``|s|`` are per-sample L2 norms averaged
  over the batch (``langevin_norm="batch"``, Song et al.'s code: one step size per batch) or
  per sample (``"sample"``: samples independent of the batch they are drawn in; this needs many
  pixels per sample, since with one pixel ``|z| / |s|`` is heavy-tailed and the chain diverged in
  our tests; with 64 pixels the random step size adds a ~4 % std bias). Song's VP factor
  ``alpha_i = 1 - beta_i`` (within ``beta_max / N`` of 1) is taken as 1.
* ``heun_ode`` (Karras et al. 2022, Algorithm 1): the probability-flow ODE by Heun's method,
  ``x' = x + dc d(x, c_i)``, ``x <- x + dc (d(x, c_i) + d(x', c_{i+1})) / 2``, with an Euler step
  for the last step to ``t = 0``, in one of two clocks ``c``: the noise level
  ``sigma_hat = sigma / alpha`` (default; Karras et al.'s choice ``sigma(t) = t, s(t) = 1``):
  ``x_hat = x / alpha``, ``d x_hat / d sigma_hat = (x_hat - D) / sigma_hat``
  ``= -sigma s(alpha x_hat, t)``, where trajectories are nearly straight; or SDE time ``t``:
  ``dx/dt = f - 1/2 g^2 s``, where the VE drift grows like ``sigma_0^{2t}``. With 10 Karras steps
  from ``t_max = 1`` (exact score, exact start, target ``N(0.7, 0.3^2)``) the sample std is 20 %
  too large in SDE time and 5.6 % in the noise-level clock (Euler–Maruyama: 30 %;
  DPM-Solver++(2M): 2.8 %). Deterministic given ``x_init``; second order.
  ``nfe = 2 N - 1`` (``2 N`` with ``final_zero=False``).
* ``dpm_solver``: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), a multistep
  exponential integrator of the probability-flow ODE in data-prediction form on the log-SNR
  ``lambda = log(alpha / sigma)``, with ``h_i = lambda_{i+1} - lambda_i`` and the denoiser
  ``D_i = (x_i + sigma_i^2 s(x_i, t_i)) / alpha_i`` (Tweedie; ``alpha = 1`` for VE):

      first step:  x_{i+1} = (sigma_{i+1} / sigma_i) x_i - alpha_{i+1} expm1(-h_i) D_i,
      later steps: same with D_i -> (1 + 1 / (2 r_i)) D_i - 1 / (2 r_i) D_{i-1},
                   r_i = h_{i-1} / h_i.

  The last step to ``t = 0`` (``lambda = inf``) is first order and reduces to ``x_0 = D(x, t_min)``
  (the lower-order final step of Lu et al.). Deterministic; second order. ``nfe = N``.

**Final-step floor.** The final step from ``t_min`` is one first-order step over ``[0, t_min]``:
its error does not shrink with ``N``. For a Gaussian target of std ``s_d`` the Euler–Maruyama,
reverse-diffusion and DPM-Solver last steps return ``E[x_0 | x_{t_min}]``, shrinking the sample
std by a factor ``s_d / sqrt(s_d^2 + sigma(t_min)^2)``: 0.56 % for ``s_d = 0.3`` with
``sigma(1e-3) = 0.0317`` at ``sigma_0 = 26``, but 15 % for ``s_d = 0.05``, so a target whose
spread is comparable to ``sigma(t_min)`` loses spread. So does Heun's Euler step in the
noise-level clock (an Euler step to ``sigma_hat = 0`` returns ``D``); in SDE time it follows the
ODE to ``O(sigma_min^4)``.

**The papers' horizon.** With ``sigma_0 = 26`` and ``t_max = 0.1`` (paper A) the prior is
``N(0, 0.375^2)`` (``sigma(0.4) = 1.44`` for paper B's ``sigma_0 = 30``). The true ``p_{t_max}``
is the data law blurred by that noise, so the prior is right only for data whose (conditional)
mean and spread are small against 0.375. For a Gaussian target ``N(mu, s^2)``, the exact
probability-flow map sends the prior to ``N(mu (1 - c), (sigma_T c)^2)`` and the exact reverse SDE
to ``N(mu (1 - c^2), sigma_T^2 c^2 (1 + c^2))`` with ``c = s / sqrt(s^2 + sigma_T^2)``: the
output std is ``s sigma_T / sqrt(s^2 + sigma_T^2)`` (ODE), not ``s``, and the mean is biased by
``-mu c``. With ``mu = 0.7, s = 0.3``: ODE mean 0.27 and std 0.23; Euler–Maruyama mean 0.43 and
std 0.27. Normalise the targets so their conditional mean and spread are well below
``sigma(t_max)``, raise ``t_max``, pass ``prior_data_std``, or add a Langevin corrector
(``predictor_corrector``, which starts by correcting at ``t_max`` and recovered mean 0.70 and
std 0.30 in the same test). The tests check these formulas with exact scores.

**Pieces.** A sampler is a time grid (``time_grid``: a schedule of ``closurejax.diffusion.
schedules`` makes the array of times) and an ``Integrator`` that walks it from a start state
(``walk(key, score_fn, sde, x, times, *, final_zero, **settings) -> x_0``, with its NFE count
and whether it draws noise); ``make_sampler(integrator)`` joins them under the signature above,
so a new sampler is one walk function and an ``INTEGRATORS`` entry, and a new schedule one grid
function.

All samplers are pure functions: ``jax.jit`` them with ``score_fn``, ``sde``, ``shape`` and the
settings closed over or static, and ``jax.vmap`` them over keys or ``x_init``.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from closurejax.diffusion.schedules import get_schedule
from closurejax.diffusion.sde import SDE, broadcast_to_state

__all__ = [
    "INTEGRATORS",
    "PAPER_A_SAMPLER",
    "PAPER_B_SAMPLER",
    "SAMPLERS",
    "Integrator",
    "SamplerConfig",
    "dpm_solver",
    "euler_maruyama",
    "get_sampler",
    "heun_ode",
    "make_sampler",
    "predictor_corrector",
    "time_grid",
]

Array = jax.Array
ScoreFn = Callable[[Array, Array], Array]
"""``score_fn(x [B, ...], t [B]) -> [B, ...]``."""

PREDICTORS: tuple[str, ...] = ("euler_maruyama", "reverse_diffusion")
LANGEVIN_NORMS: tuple[str, ...] = ("batch", "sample")
HEUN_TIME_VARIABLES: tuple[str, ...] = ("noise_level", "sde_time")


# --------------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6))
def _time_grid(
    sde: SDE,
    num_steps: int,
    t_min: float | None,
    t_max: float | None,
    schedule: str,
    rho: float,
    final_zero: bool,
) -> Array:
    """The ``[num_steps + 1]`` decreasing time grid (``closurejax.diffusion.schedules``).

    Compiled once per setting (all arguments are static): built eagerly, a new ``num_steps`` would
    otherwise compile each of its dozen small operations separately.
    """
    lo = sde.t_min if t_min is None else t_min
    hi = sde.t_max if t_max is None else t_max
    make = get_schedule(schedule)
    if schedule == "karras":
        return make(num_steps, lo, hi, sde, rho=rho, final_zero=final_zero)
    return make(num_steps, lo, hi, sde, final_zero=final_zero)


def _initial_state(
    key: Array,
    sde: SDE,
    shape: tuple[int, ...],
    t_start: Array,
    x_init: Array | None,
    prior_data_std: float,
) -> Array:
    """``x_init`` (checked against ``shape``) or a prior draw at ``t_start``."""
    if x_init is None:
        return sde.prior_sample(key, tuple(shape), t_start, prior_data_std)
    x_init = jnp.asarray(x_init)
    if x_init.shape != tuple(shape):
        raise ValueError(f"x_init has shape {x_init.shape}, expected {tuple(shape)}")
    if not jnp.issubdtype(x_init.dtype, jnp.floating):
        x_init = x_init.astype(t_start.dtype)
    return x_init


def _check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) < 1 or any(not isinstance(n, numbers.Integral) or n < 1 for n in shape):
        raise ValueError(f"shape must be a tuple of positive ints with a batch axis, got {shape}")
    return shape


def _batch_time(t: Array, batch: int) -> Array:
    """A scalar time repeated for each of ``batch`` samples, ``[batch]``."""
    return jnp.full((batch,), t, dtype=t.dtype)


def _step_inputs(times: Array, num: int) -> tuple[Array, Array, Array]:
    """``(t_i, t_{i+1}, is_last)`` for the first ``num`` steps of the grid, each ``[num]``."""
    steps = jnp.arange(num)
    return times[:num], times[1 : num + 1], steps == times.shape[0] - 2


# --------------------------------------------------------------------------------------------------
# Integrators: how a sampler walks a time grid
# --------------------------------------------------------------------------------------------------


def _em_walk(
    key: Array, score_fn: ScoreFn, sde: SDE, x: Array, times: Array, *, final_zero: bool
) -> Array:
    """Euler–Maruyama for the reverse SDE (papers A/B; module docstring) over ``times``."""
    del final_zero  # the last step (to 0 or not) is noiseless either way
    shape, num_steps = x.shape, times.shape[0] - 1
    keys = jax.random.split(key, num_steps)
    t_cur, t_next, is_last = _step_inputs(times, num_steps)

    def step(x: Array, inputs: tuple[Array, Array, Array, Array]) -> tuple[Array, None]:
        t, t_n, last, k = inputs
        tb = _batch_time(t, shape[0])
        dt = t_n - t
        x_mean = x + sde.reverse_drift(x, tb, score_fn(x, tb)) * dt
        noise = sde.diffusion(t) * jnp.sqrt(-dt) * jax.random.normal(k, shape, x.dtype)
        return jnp.where(last, x_mean, x_mean + noise), None

    x, _ = jax.lax.scan(step, x, (t_cur, t_next, is_last, keys))
    return x


def _pc_walk(
    key: Array,
    score_fn: ScoreFn,
    sde: SDE,
    x: Array,
    times: Array,
    *,
    final_zero: bool,
    predictor: Literal["euler_maruyama", "reverse_diffusion"] = "reverse_diffusion",
    corrector_steps: int = 1,
    snr: float = 0.16,
    langevin_norm: Literal["batch", "sample"] = "batch",
) -> Array:
    """Predictor–corrector (Song et al. 2021, Alg. 4/5; module docstring) over ``times``."""
    del final_zero
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    if langevin_norm not in LANGEVIN_NORMS:
        raise ValueError(f"langevin_norm must be one of {LANGEVIN_NORMS}, got {langevin_norm!r}")
    if not isinstance(corrector_steps, numbers.Integral) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be an int >= 0, got {corrector_steps!r}")
    if not (isinstance(snr, numbers.Real) and snr > 0):
        raise ValueError(f"snr must be a number > 0, got {snr!r}")
    shape, num_steps = x.shape, times.shape[0] - 1
    keys = jax.random.split(key, (num_steps, corrector_steps + 1))
    t_cur, t_next, is_last = _step_inputs(times, num_steps)
    axes = tuple(range(1, len(shape)))
    tiny = jnp.finfo(x.dtype).tiny

    def norms(v: Array) -> Array:
        per_sample = jnp.sqrt(jnp.sum(v**2, axis=axes))
        return jnp.mean(per_sample) if langevin_norm == "batch" else per_sample

    def langevin(x: Array, inputs: tuple[Array, Array]) -> tuple[Array, None]:
        tb, k = inputs
        grad = score_fn(x, tb)
        z = jax.random.normal(k, shape, x.dtype)
        eps = 2.0 * (snr * norms(z) / jnp.maximum(norms(grad), tiny)) ** 2
        eps = broadcast_to_state(eps, x)
        return x + eps * grad + jnp.sqrt(2.0 * eps) * z, None

    def step(x: Array, inputs: tuple[Array, Array, Array, Array]) -> tuple[Array, None]:
        t, t_n, last, step_keys = inputs
        tb = _batch_time(t, shape[0])
        if corrector_steps:
            tbs = jnp.broadcast_to(tb, (corrector_steps, shape[0]))
            x, _ = jax.lax.scan(langevin, x, (tbs, step_keys[1:]))
        score = score_fn(x, tb)
        z = jax.random.normal(step_keys[0], shape, x.dtype)
        if predictor == "euler_maruyama":
            dt = t_n - t
            x_mean = x + sde.reverse_drift(x, tb, score) * dt
            noise = sde.diffusion(t) * jnp.sqrt(-dt) * z
        else:
            alpha, sigma = sde.marginal(t)
            alpha_n, sigma_n = sde.marginal(t_n)
            a = alpha / alpha_n
            g2 = jnp.maximum(sigma**2 - (a * sigma_n) ** 2, 0.0)
            x_mean = (x + g2 * score) / a
            noise = jnp.sqrt(g2) * z
        return jnp.where(last, x_mean, x_mean + noise), None

    x, _ = jax.lax.scan(step, x, (t_cur, t_next, is_last, keys))
    return x


def _heun_walk(
    key: None,
    score_fn: ScoreFn,
    sde: SDE,
    x: Array,
    times: Array,
    *,
    final_zero: bool,
    time_variable: Literal["noise_level", "sde_time"] = "noise_level",
) -> Array:
    """Heun's method on the probability-flow ODE (Karras et al. 2022, Alg. 1; module docstring):
    ``"noise_level"`` integrates ``d x_hat / d s = -sigma(t) score(alpha x_hat, t)`` for
    ``x_hat = x / alpha`` in ``s = sigma / alpha`` (Karras et al.'s choice); ``"sde_time"``
    integrates ``dx/dt = f - 1/2 g^2 score`` in ``t``. Same grid points, another linear variable."""
    del key  # deterministic
    if time_variable not in HEUN_TIME_VARIABLES:
        raise ValueError(
            f"time_variable must be one of {HEUN_TIME_VARIABLES}, got {time_variable!r}"
        )
    shape, num_steps = x.shape, times.shape[0] - 1
    alpha = sde.mean_coeff(times)
    if time_variable == "noise_level":
        # s = sigma / alpha, exactly 0 at t = 0 (where the log-SNR is infinite).
        clock = jnp.where(times > 0, sde.noise_level(jnp.where(times > 0, times, 1.0)), 0.0)
        x = x / alpha[0]
    else:
        clock = times

    def slope(x: Array, t: Array) -> Array:
        """``d x_hat / d s`` (noise level) or ``dx/dt`` (SDE time) at grid time ``t``."""
        tb = _batch_time(t, shape[0])
        if time_variable == "noise_level":
            a, sigma = sde.marginal(t)
            return -sigma * score_fn(a * x, tb)
        return sde.reverse_drift(x, tb, score_fn(x, tb), probability_flow=True)

    def step(x: Array, inputs: tuple[Array, Array, Array, Array]) -> tuple[Array, None]:
        t, t_n, c, c_n = inputs
        dc = c_n - c
        d = slope(x, t)
        x_euler = x + dc * d
        return x + 0.5 * dc * (d + slope(x_euler, t_n)), None

    num_heun = num_steps - 1 if final_zero else num_steps
    inputs = (times[:num_heun], times[1 : num_heun + 1], clock[:num_heun], clock[1 : num_heun + 1])
    x, _ = jax.lax.scan(step, x, inputs)
    if final_zero:
        x = x + (clock[-1] - clock[-2]) * slope(x, times[-2])
    if time_variable == "noise_level":
        x = alpha[-1] * x
    return x


def _dpm_walk(
    key: None, score_fn: ScoreFn, sde: SDE, x: Array, times: Array, *, final_zero: bool
) -> Array:
    """DPM-Solver++(2M) on the probability-flow ODE (Lu et al. 2022; module docstring)."""
    del key  # deterministic
    shape, num_steps = x.shape, times.shape[0] - 1

    def denoise(x: Array, t: Array) -> Array:
        alpha, sigma = sde.marginal(t)
        return (x + sigma**2 * score_fn(x, _batch_time(t, shape[0]))) / alpha

    num_ms = num_steps - 1 if final_zero else num_steps
    pos = times[: num_ms + 1]  # positive times only (lambda is finite there)
    alpha, sigma = sde.marginal(pos)
    lam = sde.log_snr(pos)

    def step(
        carry: tuple[Array, Array, Array], inputs: tuple[Array, ...]
    ) -> tuple[tuple[Array, Array, Array], None]:
        x, d_prev, h_prev = carry
        i, t, s_cur, s_next, a_next, lam_cur, lam_next = inputs
        d = denoise(x, t)
        h = lam_next - lam_cur
        first = i == 0
        ratio = jnp.where(first, 0.0, h / jnp.where(first, 1.0, 2.0 * h_prev))
        d_eff = d + ratio * (d - d_prev)
        x = (s_next / s_cur) * x - a_next * jnp.expm1(-h) * d_eff
        return (x, d, h), None

    inputs = (
        jnp.arange(num_ms),
        pos[:-1],
        sigma[:-1],
        sigma[1:],
        alpha[1:],
        lam[:-1],
        lam[1:],
    )
    carry0 = (x, jnp.zeros_like(x), jnp.zeros((), lam.dtype))
    (x, _, _), _ = jax.lax.scan(step, carry0, inputs)
    if final_zero:
        x = sde.mean_coeff(times[-1]) * denoise(x, times[-2])
    return x


@dataclasses.dataclass(frozen=True)
class Integrator:
    """How a sampler walks a decreasing time grid: the one piece a new sampler adds.

    Attributes:
        walk: ``walk(key, score_fn, sde, x [shape], times [N + 1], *, final_zero, **settings)
            -> x_0 [shape]`` from the start state ``x`` at ``times[0]``; ``key`` is the walk's
            own noise (None for a deterministic walk).
        stochastic: whether the walk draws noise; the sampler's key is then split into the
            prior's and the walk's (``split(key)``), else it serves the prior draw alone.
        nfe: ``nfe(num_steps, final_zero, settings) -> int``, the score evaluations of a walk.
        settings: the ``SamplerConfig`` fields the walk takes besides ``final_zero``.
    """

    walk: Callable[..., Array]
    stochastic: bool
    nfe: Callable[[int, bool, dict[str, Any]], int]
    settings: tuple[str, ...] = ()


INTEGRATORS: dict[str, Integrator] = {
    "euler_maruyama": Integrator(_em_walk, True, lambda n, fz, s: n),
    "predictor_corrector": Integrator(
        _pc_walk,
        True,
        lambda n, fz, s: n * (1 + int(s.get("corrector_steps", 1))),
        ("predictor", "corrector_steps", "snr", "langevin_norm"),
    ),
    "heun_ode": Integrator(
        _heun_walk, False, lambda n, fz, s: 2 * n - 1 if fz else 2 * n, ("time_variable",)
    ),
    "dpm_solver": Integrator(_dpm_walk, False, lambda n, fz, s: n),
}
"""The integrators by sampler name (module docstring); ``make_sampler`` turns one into a sampler."""


def time_grid(
    sde: SDE,
    num_steps: int = 10,
    t_min: float | None = None,
    t_max: float | None = None,
    schedule: str = "karras",
    rho: float = 7.0,
    final_zero: bool = True,
) -> Array:
    """The ``[num_steps + 1]`` decreasing time grid a sampler walks (``closurejax.diffusion.
    schedules``; ``t_min``, ``t_max`` default to the SDE's)."""
    return _time_grid(sde, num_steps, t_min, t_max, schedule, rho, final_zero)


def make_sampler(integrator: Integrator) -> Callable[..., tuple[Array, int]]:
    """The sampler of ``integrator``: builds the time grid, draws (or checks) the start state and
    walks the grid. Its signature is every sampler's::

        sampler(key, score_fn, sde, shape, *, num_steps=10, t_min=None, t_max=None,
                schedule="karras", rho=7.0, final_zero=True, x_init=None, prior_data_std=0.0,
                **settings) -> (x_0 [shape], nfe)

    ``num_steps, t_min, t_max, schedule, rho, final_zero`` make the grid (static Python values:
    it is compiled once per setting), ``x_init`` is an optional start state ``[shape]`` at
    ``t_max`` (else a prior draw with ``prior_data_std``), ``settings`` go to the walk.
    """

    def sampler(
        key: Array,
        score_fn: ScoreFn,
        sde: SDE,
        shape: tuple[int, ...],
        *,
        num_steps: int = 10,
        t_min: float | None = None,
        t_max: float | None = None,
        schedule: str = "karras",
        rho: float = 7.0,
        final_zero: bool = True,
        x_init: Array | None = None,
        prior_data_std: float = 0.0,
        **settings: object,
    ) -> tuple[Array, int]:
        shape = _check_shape(shape)
        unknown = sorted(set(settings) - set(integrator.settings))
        if unknown:
            raise TypeError(
                f"unexpected sampler settings {unknown}; allowed: {integrator.settings}"
            )
        times = _time_grid(sde, num_steps, t_min, t_max, schedule, rho, final_zero)
        if integrator.stochastic:
            prior_key, walk_key = jax.random.split(key)
        else:
            prior_key, walk_key = key, None
        x = _initial_state(prior_key, sde, shape, times[0], x_init, prior_data_std)
        x = integrator.walk(walk_key, score_fn, sde, x, times, final_zero=final_zero, **settings)
        return x, integrator.nfe(num_steps, final_zero, settings)

    sampler.__doc__ = f"{integrator.walk.__doc__}\n\nA sampler of ``make_sampler``: see there."
    return sampler


euler_maruyama = make_sampler(INTEGRATORS["euler_maruyama"])
predictor_corrector = make_sampler(INTEGRATORS["predictor_corrector"])
heun_ode = make_sampler(INTEGRATORS["heun_ode"])
dpm_solver = make_sampler(INTEGRATORS["dpm_solver"])

SAMPLERS: dict[str, Callable[..., tuple[Array, int]]] = {
    "euler_maruyama": euler_maruyama,
    "predictor_corrector": predictor_corrector,
    "heun_ode": heun_ode,
    "dpm_solver": dpm_solver,
}
"""Samplers by name; see ``get_sampler``."""


def get_sampler(name: str) -> Callable[..., tuple[Array, int]]:
    """The sampler called ``name`` (one of ``SAMPLERS``); ``ValueError`` for an unknown name."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """All settings of a sampler, hashable (a valid static jit argument).

    Attributes:
        name: one of ``SAMPLERS``.
        num_steps: number of time steps ``N >= 1``.
        t_min, t_max: time window, ``None`` for the SDE's ``t_min`` / ``t_max``.
        schedule: ``"karras"``, ``"uniform"`` or ``"log_sigma"``.
        rho: Karras exponent.
        final_zero: end with a noiseless step from ``t_min`` to 0.
        prior_data_std: ``data_std`` of the prior draw (0: the papers' ``N(0, sigma(t_max)^2)``).
        predictor, corrector_steps, snr, langevin_norm: ``predictor_corrector`` only.
        time_variable: ``heun_ode`` only.
    """

    name: str = "euler_maruyama"
    num_steps: int = 10
    t_min: float | None = None
    t_max: float | None = None
    schedule: str = "karras"
    rho: float = 7.0
    final_zero: bool = True
    prior_data_std: float = 0.0
    predictor: str = "reverse_diffusion"
    corrector_steps: int = 1
    snr: float = 0.16
    langevin_norm: str = "batch"
    time_variable: str = "noise_level"

    def __post_init__(self) -> None:
        get_sampler(self.name)
        get_schedule(self.schedule)
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, numbers.Integral):
            raise ValueError(f"SamplerConfig.num_steps must be an int >= 1, got {self.num_steps!r}")
        if self.num_steps < 1:
            raise ValueError(f"SamplerConfig.num_steps must be >= 1, got {self.num_steps}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"SamplerConfig.predictor must be one of {PREDICTORS}")
        if self.langevin_norm not in LANGEVIN_NORMS:
            raise ValueError(f"SamplerConfig.langevin_norm must be one of {LANGEVIN_NORMS}")
        if self.time_variable not in HEUN_TIME_VARIABLES:
            raise ValueError(f"SamplerConfig.time_variable must be one of {HEUN_TIME_VARIABLES}")
        if not isinstance(self.corrector_steps, numbers.Integral) or self.corrector_steps < 0:
            raise ValueError(
                f"SamplerConfig.corrector_steps must be an int >= 0, got {self.corrector_steps!r}"
            )

    @property
    def nfe(self) -> int:
        """Score evaluations one call makes (known without running it)."""
        integrator = INTEGRATORS[self.name]
        settings = {f: getattr(self, f) for f in integrator.settings}
        return integrator.nfe(self.num_steps, self.final_zero, settings)

    def settings(self) -> dict[str, object]:
        """Keyword arguments for the named sampler function."""
        common: dict[str, object] = {
            "num_steps": self.num_steps,
            "t_min": self.t_min,
            "t_max": self.t_max,
            "schedule": self.schedule,
            "rho": self.rho,
            "final_zero": self.final_zero,
            "prior_data_std": self.prior_data_std,
        }
        common.update({f: getattr(self, f) for f in INTEGRATORS[self.name].settings})
        return common

    def sample(
        self,
        key: Array,
        score_fn: ScoreFn,
        sde: SDE,
        shape: tuple[int, ...],
        x_init: Array | None = None,
    ) -> tuple[Array, int]:
        """Run the configured sampler: ``(x_0 [shape], nfe)``."""
        return get_sampler(self.name)(key, score_fn, sde, shape, x_init=x_init, **self.settings())


PAPER_A_SAMPLER = SamplerConfig(name="euler_maruyama", num_steps=10, t_min=1e-3, t_max=0.1)
"""Paper A: Euler–Maruyama, Karras rho = 7, 10 steps from t = 0.1 to 1e-3, then to 0 (VE 26)."""
PAPER_B_SAMPLER = SamplerConfig(name="euler_maruyama", num_steps=10, t_min=1e-3, t_max=0.4)
"""Paper B: as paper A with ``t_max = 0.4`` (VE with ``sigma_0 = 30``)."""
