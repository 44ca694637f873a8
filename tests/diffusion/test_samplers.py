"""Tests for closurejax.diffusion.samplers with exact (analytic) scores.

Targets: a Gaussian ``N(mu, s^2)`` per pixel, whose perturbed marginal is
``N(alpha mu, alpha^2 s^2 + sigma^2)`` with score ``-(x - alpha mu) / (alpha^2 s^2 + sigma^2)``,
and a 1-D two-component mixture ``0.3 N(-1, 0.2^2) + 0.7 N(1, 0.2^2)``, whose perturbed score is the
responsibility-weighted sum of the component scores. For these targets the probability-flow map is
known in closed form, which lets the ODE samplers' convergence order be measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.diffusion import samplers
from closurejax.diffusion.samplers import SamplerConfig
from closurejax.diffusion.sde import SDE, VESDE, VPSDE, broadcast_to_state

MU, S = 0.7, 0.3
VE = VESDE(26.0)
VP = VPSDE()
SAMPLER_NAMES = ["euler_maruyama", "predictor_corrector", "heun_ode", "dpm_solver"]


# --------------------------------------------------------------------------------------------------
# Analytic targets
# --------------------------------------------------------------------------------------------------


def gaussian_marginal(sde: SDE, t: float, mu: float = MU, s: float = S) -> tuple[float, float]:
    """Mean and std of the perturbed Gaussian target at time ``t``."""
    alpha, sigma = (float(v) for v in sde.marginal(t))
    return alpha * mu, math.sqrt(alpha**2 * s**2 + sigma**2)


def gaussian_score(sde: SDE, mu: float = MU, s: float = S) -> Callable:
    """Exact perturbed score of ``N(mu, s^2)`` per pixel: ``[B, ...], [B] -> [B, ...]``."""

    def score(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma = sde.marginal(t)
        alpha, sigma = broadcast_to_state(alpha, x), broadcast_to_state(sigma, x)
        return -(x - alpha * mu) / (alpha**2 * s**2 + sigma**2)

    return score


def gaussian_init(sde: SDE, t: float, shape: tuple[int, ...], seed: int = 1) -> jax.Array:
    """An exact draw from the perturbed Gaussian target at ``t``."""
    mean, std = gaussian_marginal(sde, t)
    return mean + std * jax.random.normal(jax.random.key(seed), shape)


WEIGHTS = jnp.array([0.3, 0.7])
MEANS = jnp.array([-1.0, 1.0])
COMP_STD = 0.2


def mixture_score(sde: SDE) -> Callable:
    """Exact score of the perturbed mixture: ``sum_k r_k(x) (-(x - alpha m_k) / v_k)``."""

    def score(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma = sde.marginal(t)
        alpha = broadcast_to_state(alpha, x)[..., None]
        sigma = broadcast_to_state(sigma, x)[..., None]
        var = alpha**2 * COMP_STD**2 + sigma**2
        centred = x[..., None] - alpha * MEANS
        log_resp = jnp.log(WEIGHTS) - 0.5 * centred**2 / var - 0.5 * jnp.log(var)
        return jnp.sum(jax.nn.softmax(log_resp, axis=-1) * (-centred / var), axis=-1)

    return score


def mixture_init(sde: SDE, t: float, shape: tuple[int, ...], seed: int = 3) -> jax.Array:
    """An exact draw from the perturbed mixture at ``t``."""
    alpha, sigma = sde.marginal(t)
    k_comp, k_noise = jax.random.split(jax.random.key(seed))
    means = jnp.where(jax.random.bernoulli(k_comp, float(WEIGHTS[1]), shape), 1.0, -1.0)
    std = jnp.sqrt(alpha**2 * COMP_STD**2 + sigma**2)
    return alpha * means + std * jax.random.normal(k_noise, shape)


# --------------------------------------------------------------------------------------------------
# (a) Gaussian target: mean and std
# --------------------------------------------------------------------------------------------------

# (sde, sampler, settings, shape, std tolerance). With 20 000 samples the sample mean has a standard
# error of 0.3 / sqrt(20 000) = 0.0021 and the sample std a relative one of 1 / sqrt(40 000) =
# 0.005. Measured with these seeds: |mean error| <= 0.0046 everywhere; relative std error 1.0 %
# (Euler-Maruyama), 0.9 % / 1.6 % (PC, VE / VP), <= 0.7 % (ODE samplers, including the 0.56 %
# final-step shrink of VE), 3.9 % (PC with per-sample Langevin norms over 64 pixels: a random step
# size adds bias). Tolerances: mean 0.01 (~5 standard errors), std 0.025 (ODE, EM), 0.035 (PC),
# 0.06 (per-sample norms).
_SHAPE = (10_000, 2)
GAUSSIAN_CASES = [
    pytest.param(VE, "euler_maruyama", {"num_steps": 200}, _SHAPE, 0.025, id="ve-em"),
    pytest.param(
        VE,
        "predictor_corrector",
        {"num_steps": 100, "predictor": "euler_maruyama"},
        _SHAPE,
        0.035,
        id="ve-pc-em",
    ),
    pytest.param(
        VE,
        "predictor_corrector",
        {"num_steps": 100, "langevin_norm": "sample"},
        (320, 64),
        0.06,
        id="ve-pc-sample-norm",
    ),
    pytest.param(VE, "heun_ode", {"num_steps": 32}, _SHAPE, 0.025, id="ve-heun"),
    pytest.param(VE, "dpm_solver", {"num_steps": 32}, _SHAPE, 0.025, id="ve-dpm"),
    pytest.param(VP, "euler_maruyama", {"num_steps": 400}, _SHAPE, 0.025, id="vp-em"),
    pytest.param(VP, "predictor_corrector", {"num_steps": 200}, _SHAPE, 0.035, id="vp-pc"),
    pytest.param(VP, "dpm_solver", {"num_steps": 64}, _SHAPE, 0.025, id="vp-dpm"),
]


@pytest.mark.parametrize(("sde", "name", "settings", "shape", "std_tol"), GAUSSIAN_CASES)
def test_gaussian_target(
    sde: SDE, name: str, settings: dict, shape: tuple[int, int], std_tol: float
) -> None:
    """From the exact law at t_max = 1, each sampler reproduces N(0.7, 0.3^2)."""
    x_init = gaussian_init(sde, 1.0, shape)
    x, nfe = samplers.get_sampler(name)(
        jax.random.key(0), gaussian_score(sde), sde, shape, x_init=x_init, t_max=1.0, **settings
    )
    assert x.shape == shape and bool(jnp.all(jnp.isfinite(x)))
    assert abs(float(jnp.mean(x)) - MU) < 0.01
    assert abs(float(jnp.std(x)) / S - 1.0) < std_tol


# --------------------------------------------------------------------------------------------------
# (b) Two-component mixture: weights and component means
# --------------------------------------------------------------------------------------------------

MIXTURE_CASES = [
    pytest.param(VE, "euler_maruyama", {"num_steps": 200}, id="ve-em"),
    pytest.param(VE, "predictor_corrector", {"num_steps": 100}, id="ve-pc"),
    pytest.param(VE, "heun_ode", {"num_steps": 32}, id="ve-heun"),
    pytest.param(VE, "dpm_solver", {"num_steps": 32}, id="ve-dpm"),
]


@pytest.mark.parametrize(("sde", "name", "settings"), MIXTURE_CASES)
def test_mixture_target(sde: SDE, name: str, settings: dict) -> None:
    """Weights 0.3/0.7 (fraction > 0) within 0.015 and means -1/+1 within 0.015.

    With 20 000 samples the fraction's standard error is sqrt(0.21 / 20 000) = 0.0032 and the
    component means' are 0.2 / sqrt(6000) = 0.0026 and 0.2 / sqrt(14 000) = 0.0017; measured
    deviations are <= 0.005 (fractions) and <= 0.006 (means). Component stds within 10 %
    (measured <= 5 %, VP at 32 DPM steps).
    """
    shape = (20_000, 1)
    x_init = mixture_init(sde, 1.0, shape)
    x, _ = samplers.get_sampler(name)(
        jax.random.key(0), mixture_score(sde), sde, shape, x_init=x_init, t_max=1.0, **settings
    )
    x = np.asarray(x).ravel()
    positive = x > 0
    assert abs(positive.mean() - 0.7) < 0.015
    assert abs(x[positive].mean() - 1.0) < 0.015
    assert abs(x[~positive].mean() + 1.0) < 0.015
    assert abs(x[positive].std() / COMP_STD - 1.0) < 0.1
    assert abs(x[~positive].std() / COMP_STD - 1.0) < 0.1


# --------------------------------------------------------------------------------------------------
# (c) ODE samplers: determinism and convergence order against the exact flow map
# --------------------------------------------------------------------------------------------------


def exact_flow(sde: SDE, x_start: jax.Array, t_start: float, t_end: float) -> jax.Array:
    """Probability-flow map of the Gaussian target: affine, x -> m_e + (x - m_s) std_e / std_s."""
    m_s, std_s = gaussian_marginal(sde, t_start)
    m_e, std_e = gaussian_marginal(sde, t_end)
    return m_e + (x_start - m_s) * std_e / std_s


ODE_CASES = [
    ("heun_ode", {}),
    ("heun_ode", {"time_variable": "sde_time"}),
    ("dpm_solver", {}),
]
ORDER_CASES = [
    pytest.param(VE, "heun_ode", {}, id="ve-heun"),
    pytest.param(VE, "heun_ode", {"time_variable": "sde_time"}, id="ve-heun-t"),
    pytest.param(VE, "dpm_solver", {}, id="ve-dpm"),
    pytest.param(VP, "heun_ode", {}, id="vp-heun"),
    pytest.param(VP, "dpm_solver", {}, id="vp-dpm"),
]


@pytest.mark.parametrize(("sde", "name", "settings"), ORDER_CASES)
def test_ode_convergence_order(x64: None, sde: SDE, name: str, settings: dict) -> None:
    """Max error vs the exact map t_max = 1 -> t_min falls as N^-2 (slope over N = 16, 32, 64).

    Measured slopes (least squares in log2): Heun 2.04 (VE) / 2.08 (VP), Heun in SDE time 2.15
    (VE), DPM-Solver++(2M) 1.99 (VE) / 1.94 (VP). The final step to t = 0 is left
    out (``final_zero=False``): it is one first-order step whose error does not shrink with N.
    """
    shape = (256, 1)
    x_init = gaussian_init(sde, 1.0, shape)
    target = exact_flow(sde, x_init, 1.0, sde.t_min)
    steps = np.array([16, 32, 64])
    errors = []
    for n in steps:
        x, _ = samplers.get_sampler(name)(
            jax.random.key(0),
            gaussian_score(sde),
            sde,
            shape,
            x_init=x_init,
            t_max=1.0,
            num_steps=int(n),
            final_zero=False,
            **settings,
        )
        errors.append(float(jnp.max(jnp.abs(x - target))))
    slope = -np.polyfit(np.log2(steps), np.log2(errors), 1)[0]
    assert abs(slope - 2.0) < 0.5, (errors, slope)
    assert errors[-1] < 1e-2


@pytest.mark.parametrize(("name", "settings"), ODE_CASES, ids=["heun", "heun-t", "dpm"])
def test_final_step_to_zero(x64: None, name: str, settings: dict) -> None:
    """The last step t_min -> 0 is what the module docstring says: the denoiser
    ``E[x_0 | x_{t_min}]`` for DPM-Solver and Heun in the noise-level clock, the ODE itself for
    Heun in SDE time. From t_max = 0.4 with N = 64 the solver error is < 5e-4 while the two
    candidate endings differ by > 4e-3 (the documented floor), so the test tells them apart.
    """
    shape = (256, 1)
    x_init = gaussian_init(VE, 0.4, shape)
    x, _ = samplers.get_sampler(name)(
        jax.random.key(0),
        gaussian_score(VE),
        VE,
        shape,
        x_init=x_init,
        t_max=0.4,
        num_steps=64,
        **settings,
    )
    ode_end = exact_flow(VE, x_init, 0.4, 0.0)
    var_min = S**2 + float(VE.std(VE.t_min)) ** 2
    denoised_end = MU + (exact_flow(VE, x_init, 0.4, VE.t_min) - MU) * S**2 / var_min
    expected, other = (
        (ode_end, denoised_end)
        if settings.get("time_variable") == "sde_time"
        else (denoised_end, ode_end)
    )
    assert float(jnp.max(jnp.abs(ode_end - denoised_end))) > 4e-3
    assert float(jnp.max(jnp.abs(x - expected))) < 1e-3
    assert float(jnp.max(jnp.abs(x - other))) > 3e-3


# --------------------------------------------------------------------------------------------------
# NFE, jit and vmap
# --------------------------------------------------------------------------------------------------


def counting(score_fn: Callable, calls: list[int]) -> Callable:
    """``score_fn`` that appends to ``calls`` each time it is *executed* (not traced)."""

    def score(x: jax.Array, t: jax.Array) -> jax.Array:
        jax.debug.callback(lambda: calls.append(1), ordered=True)
        return score_fn(x, t)

    return score


JIT_CASES = [
    pytest.param("euler_maruyama", {}, 5, id="em"),
    pytest.param("predictor_corrector", {"corrector_steps": 2}, 15, id="pc"),
    pytest.param("heun_ode", {}, 9, id="heun"),
    pytest.param("dpm_solver", {}, 5, id="dpm"),
]


@pytest.mark.parametrize(("name", "settings", "nfe"), JIT_CASES)
def test_jit_vmap_nfe_and_determinism(name: str, settings: dict, nfe: int) -> None:
    """Samplers run under jit (score, sde and settings closed over) and vmap over keys and initial
    states, on [B, x, y] states, and match the eager call. The reported nfe equals the score
    evaluations executed (counted at run time). The ODE samplers ignore the key when given
    ``x_init`` (deterministic); the stochastic ones draw different noise for another key.
    """
    shape = (3, 4, 4)
    sampler = samplers.get_sampler(name)
    x_init = gaussian_init(VE, 0.4, shape)
    calls: list[int] = []

    def run(key: jax.Array, x_start: jax.Array, score_fn: Callable) -> tuple[jax.Array, int]:
        return sampler(key, score_fn, VE, shape, num_steps=5, t_max=0.4, x_init=x_start, **settings)

    def run_plain(key: jax.Array, x_start: jax.Array) -> jax.Array:
        return run(key, x_start, gaussian_score(VE))[0]

    keys = jax.random.split(jax.random.key(0), 2)[jnp.array([0, 1, 0])]
    starts = jnp.stack([x_init, x_init, x_init + 0.5])
    batched = np.asarray(jax.jit(jax.vmap(run_plain))(keys, starts))
    eager, reported = run(keys[0], x_init, counting(gaussian_score(VE), calls))
    jax.effects_barrier()
    assert reported == nfe == len(calls)
    assert SamplerConfig(name=name, num_steps=5, **settings).nfe == nfe
    assert batched.shape == (3, *shape) and np.all(np.isfinite(batched))
    np.testing.assert_allclose(batched[0], eager, rtol=1e-5, atol=1e-6)
    if name in ("heun_ode", "dpm_solver"):
        np.testing.assert_allclose(batched[1], batched[0], rtol=1e-6, atol=1e-7)
    else:
        assert np.max(np.abs(batched[1] - batched[0])) > 1e-3
    assert np.max(np.abs(batched[2] - batched[0])) > 1e-3


@pytest.mark.parametrize(("name", "nfe"), [("heun_ode", 8), ("dpm_solver", 4)])
def test_nfe_without_final_zero(name: str, nfe: int) -> None:
    """Without the last step to 0, Heun makes 2 N evaluations (no final Euler step), DPM N."""
    calls: list[int] = []
    shape = (3, 4, 4)
    score = counting(gaussian_score(VE), calls)
    x, reported = samplers.get_sampler(name)(
        jax.random.key(0), score, VE, shape, num_steps=4, t_max=0.4, final_zero=False
    )
    jax.block_until_ready(x)
    jax.effects_barrier()
    assert reported == nfe == len(calls) == SamplerConfig(name, 4, final_zero=False).nfe


# --------------------------------------------------------------------------------------------------
# (e) The papers' horizon t_max = 0.1: the prior is not the marginal
# --------------------------------------------------------------------------------------------------


def test_paper_a_horizon_biases_samples_as_documented() -> None:
    """sigma(0.1) = 0.375 for sigma_0 = 26, comparable with the target N(0.7, 0.3^2).

    Starting from N(0, 0.375^2) with the *exact* score, the ODE samplers return
    N(mu (1 - k), (sigma_T k)^2), k = c s / sqrt(s^2 + sigma_min^2), c = s / sqrt(s^2 + sigma_T^2)
    (exact flow to t_min, then the final denoising step): mean 0.27 and std 0.233 instead of 0.7
    and 0.3. Euler–Maruyama follows the exact reverse SDE: mean mu (1 - c^2) = 0.43, std 0.275.
    A Langevin corrector pulls the prior back to p_{t_max}; ``prior_data_std`` (for a centred
    target) removes the bias.
    """
    sde = VESDE(26.0, t_max=0.1)
    shape = (10_000, 2)
    sigma_t, sigma_min = float(sde.std(0.1)), float(sde.std(1e-3))
    assert sigma_t == pytest.approx(0.3755, abs=1e-4)
    c = S / math.sqrt(S**2 + sigma_t**2)
    v_min = S**2 + sigma_min**2
    k = c * S / math.sqrt(v_min)
    ode_mean, ode_std = MU * (1 - k), sigma_t * k
    # Exact reverse SDE to t_min (posterior of x_min given x_T), then the denoising step.
    sde_mean = MU * (1 - c**2)
    sde_var = c**4 * sigma_t**2 + S**4 * (sigma_t**2 - sigma_min**2) / (v_min * (S**2 + sigma_t**2))
    cases = [
        ("heun_ode", {"num_steps": 32}, ode_mean, ode_std),
        ("dpm_solver", {"num_steps": 32}, ode_mean, ode_std),
        ("euler_maruyama", {"num_steps": 200}, sde_mean, math.sqrt(sde_var)),
        ("predictor_corrector", {"num_steps": 100}, MU, S * S / math.sqrt(v_min)),
    ]
    for name, settings, mean, std in cases:
        x, _ = samplers.get_sampler(name)(
            jax.random.key(0), gaussian_score(sde), sde, shape, **settings
        )
        assert abs(float(jnp.mean(x)) - mean) < 0.01, name
        assert abs(float(jnp.std(x)) / std - 1) < 0.025, name
    # The bias is large: the ODE mean is 0.27, not 0.7.
    assert MU - ode_mean > 0.4
    x, _ = SamplerConfig(name="heun_ode", num_steps=32, prior_data_std=S).sample(
        jax.random.key(0), gaussian_score(sde, mu=0.0), sde, shape
    )
    assert abs(float(jnp.mean(x))) < 0.01
    assert abs(float(jnp.std(x)) / (S * S / math.sqrt(v_min)) - 1) < 0.025


# --------------------------------------------------------------------------------------------------
# Configuration and validation
# --------------------------------------------------------------------------------------------------


def test_sampler_config_dispatch_and_presets() -> None:
    shape = (3, 4, 4)
    score = gaussian_score(VE)
    config = SamplerConfig(name="heun_ode", num_steps=4, t_max=0.4, time_variable="sde_time")
    direct = samplers.heun_ode(
        jax.random.key(3), score, VE, shape, num_steps=4, t_max=0.4, time_variable="sde_time"
    )
    via_config = config.sample(jax.random.key(3), score, VE, shape)
    np.testing.assert_array_equal(direct[0], via_config[0])
    assert direct[1] == via_config[1] == config.nfe == 7
    assert samplers.PAPER_A_SAMPLER.name == "euler_maruyama"
    assert (samplers.PAPER_A_SAMPLER.t_max, samplers.PAPER_B_SAMPLER.t_max) == (0.1, 0.4)
    assert samplers.PAPER_A_SAMPLER.nfe == 10
    assert hash(config) == hash(SamplerConfig(**config.__dict__))
    assert "corrector_steps" not in SamplerConfig(name="dpm_solver").settings()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: samplers.get_sampler("ddim"), "unknown sampler"),
        (lambda: SamplerConfig(name="ddim"), "unknown sampler"),
        (lambda: SamplerConfig(num_steps=0), "num_steps"),
        (lambda: SamplerConfig(schedule="cosine"), "unknown schedule"),
        (lambda: SamplerConfig(predictor="langevin"), "predictor"),
        (lambda: SamplerConfig(corrector_steps=-1), "corrector_steps"),
        (lambda: SamplerConfig(time_variable="sigma"), "time_variable"),
        (
            lambda: samplers.euler_maruyama(
                jax.random.key(0), gaussian_score(VE), VE, (4, 2), x_init=jnp.zeros((4, 3))
            ),
            "x_init",
        ),
        (
            lambda: samplers.predictor_corrector(
                jax.random.key(0), gaussian_score(VE), VE, (4, 2), snr=0.0
            ),
            "snr",
        ),
        (
            lambda: samplers.heun_ode(jax.random.key(0), gaussian_score(VE), VE, (0, 2)),
            "shape",
        ),
    ],
)
def test_validation(call: Callable, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_a_new_sampler_is_one_walk_over_the_shared_time_grid():
    """`make_sampler` joins a walk to the time grid and the prior: a one-step Tweedie denoiser
    built from a four-line walk returns E[x_0 | x_{t_max}] = x_T·s²/(s²+σ_T²) for a centred
    Gaussian target of std s (exact score), and equals the walk called by hand."""
    s = 0.3

    def score(x, t):
        var = s**2 + VE.marginal(t)[1] ** 2
        return -x / broadcast_to_state(var, x)

    def tweedie(key, score_fn, sde, x, times, *, final_zero, scale=1.0):
        del key, final_zero
        t = jnp.full((x.shape[0],), times[0])
        return scale * (x + VE.marginal(times[0])[1] ** 2 * score_fn(x, t))

    one_step = samplers.Integrator(
        tweedie, stochastic=False, nfe=lambda n, fz, st: 1, settings=("scale",)
    )
    sample = samplers.make_sampler(one_step)
    key, shape = jax.random.PRNGKey(0), (4000, 1)
    x, nfe = sample(key, score, VE, shape, num_steps=3, t_max=0.1)
    assert nfe == 1
    times = samplers.time_grid(VE, 3, None, 0.1)
    start = VE.prior_sample(key, shape, times[0], 0.0)  # deterministic walk: the key is the prior's
    np.testing.assert_array_equal(x, tweedie(None, score, VE, start, times, final_zero=True))
    sigma_t = float(VE.marginal(times[0])[1])
    np.testing.assert_allclose(x, start * s**2 / (s**2 + sigma_t**2), rtol=1e-5)
    halved, _ = sample(key, score, VE, shape, num_steps=3, t_max=0.1, scale=0.5)
    np.testing.assert_allclose(halved, 0.5 * x, rtol=1e-6)
    with pytest.raises(TypeError, match=r"unexpected sampler settings \['snr'\]"):
        sample(key, score, VE, shape, snr=0.1)
    # the grid is the schedule's
    from closurejax.diffusion import schedules

    np.testing.assert_array_equal(
        samplers.time_grid(VE, 5, 1e-3, 0.1, "uniform"),
        schedules.uniform(5, 1e-3, 0.1, VE, final_zero=True),
    )
