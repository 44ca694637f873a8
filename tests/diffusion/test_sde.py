"""Tests for closurejax.diffusion.sde and closurejax.diffusion.schedules."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.diffusion import schedules
from closurejax.diffusion.sde import SDE, VESDE, VPSDE, broadcast_to_state

SDES = [VESDE(26.0), VESDE(30.0, t_max=0.4), VPSDE(), VPSDE(beta_min=0.5, beta_max=0.5)]
SDE_IDS = ["ve26", "ve30", "vp", "vp-const"]


@pytest.fixture(scope="module", autouse=True)
def _enable_x64() -> Iterator[None]:
    """Run this module in float64 (tight identities), restoring the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


# --------------------------------------------------------------------------------------------------
# Closed forms and their consistency with drift and diffusion
# --------------------------------------------------------------------------------------------------


def test_ve_std_matches_papers_formula_and_documented_values() -> None:
    """sigma(t) = sqrt((s^{2t} - 1) / (2 ln s)) and the horizons quoted in the docstrings."""
    t = np.array([1e-5, 1e-3, 0.1, 0.4, 1.0, 2.0])
    for base in (26.0, 30.0):
        expected = np.sqrt((base ** (2 * t) - 1) / (2 * np.log(base)))
        np.testing.assert_allclose(VESDE(base).std(t), expected, rtol=1e-9)
    ve26, ve30 = VESDE(26.0), VESDE(30.0)
    assert float(ve26.std(0.1)) == pytest.approx(0.3755, abs=5e-4)
    assert float(ve26.std(1e-3)) == pytest.approx(0.0317, abs=5e-5)
    assert float(ve26.std(0.4)) == pytest.approx(1.388, abs=5e-4)
    assert float(ve26.std(1.0)) == pytest.approx(10.178, abs=5e-4)
    assert float(ve30.std(0.4)) == pytest.approx(1.4446, abs=5e-4)
    np.testing.assert_allclose(ve26.mean_coeff(t), 1.0)
    np.testing.assert_allclose(ve26.diffusion(t), 26.0**t, rtol=1e-12)


def test_vp_closed_forms() -> None:
    """alpha = exp(-1/2 int beta), sigma^2 = 1 - alpha^2, g = sqrt(beta) for Song's VP SDE."""
    vp = VPSDE()
    t = np.array([1e-3, 0.25, 0.5, 1.0])
    integral = 0.1 * t + 0.5 * (20.0 - 0.1) * t**2
    np.testing.assert_allclose(vp.mean_coeff(t), np.exp(-0.5 * integral), rtol=1e-12)
    np.testing.assert_allclose(vp.std(t), np.sqrt(1 - np.exp(-integral)), rtol=1e-12)
    np.testing.assert_allclose(vp.diffusion(t), np.sqrt(0.1 + t * 19.9), rtol=1e-12)
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(vp.drift(x, t), -0.5 * (0.1 + t * 19.9)[:, None] * x, rtol=1e-12)


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_marginal_solves_the_moment_equations(sde: SDE) -> None:
    """For dx = a(t) x dt + g dw: d alpha/dt = a alpha and d sigma^2/dt = 2 a sigma^2 + g^2.

    Ties ``marginal`` to ``drift`` and ``diffusion`` by automatic differentiation.
    """
    ts = jnp.array([2e-3, 0.05, 0.3, 0.7, 0.95])
    for t in ts:
        a_coef = sde.drift(jnp.ones((1,)), t)[0]  # drift of x = 1 is the coefficient a(t)
        d_alpha = jax.grad(sde.mean_coeff)(t)
        d_var = jax.grad(lambda s: sde.std(s) ** 2)(t)
        alpha, sigma = sde.marginal(t)
        assert float(d_alpha) == pytest.approx(float(a_coef * alpha), rel=1e-8, abs=1e-12)
        expected = float(2 * a_coef * sigma**2 + sde.diffusion(t) ** 2)
        assert float(d_var) == pytest.approx(expected, rel=1e-8)
    assert float(sde.std(0.0)) == 0.0
    assert float(sde.mean_coeff(0.0)) == 1.0


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_log_snr_and_noise_level_inverses(sde: SDE) -> None:
    """t(lambda(t)) = t and t(noise_level(t)) = t, with lambda = log(alpha / sigma) decreasing."""
    t = jnp.array([1e-4, 1e-3, 0.01, 0.1, 0.4, 0.9, 1.0])
    lam = sde.log_snr(t)
    alpha, sigma = sde.marginal(t)
    np.testing.assert_allclose(lam, np.log(alpha / sigma), rtol=1e-10)
    assert bool(jnp.all(jnp.diff(lam) < 0))
    np.testing.assert_allclose(sde.t_from_log_snr(lam), t, rtol=1e-9)
    np.testing.assert_allclose(sde.noise_level(t), sigma / alpha, rtol=1e-10)
    np.testing.assert_allclose(sde.t_from_noise_level(sigma / alpha), t, rtol=1e-9)


def test_log_snr_in_float32_keeps_small_times() -> None:
    """expm1/log1p keep t = 1e-3 accurate in float32 (naive s^{2t} - 1 loses ~4 digits)."""
    ve = VESDE(26.0)
    t32 = jnp.asarray(1e-3, jnp.float32)
    assert ve.std(t32).dtype == jnp.float32
    assert float(ve.std(t32)) == pytest.approx(float(ve.std(1e-3)), rel=1e-6)
    assert float(ve.t_from_log_snr(ve.log_snr(t32))) == pytest.approx(1e-3, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# Prior, reverse drift, broadcasting
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sde", [VESDE(26.0, t_max=0.1), VPSDE()], ids=["ve-paperA", "vp"])
def test_prior_sample_std(sde: SDE) -> None:
    """Prior std is sigma(t_max) (data_std = 0) or sqrt(alpha^2 data_std^2 + sigma^2)."""
    key = jax.random.key(0)
    n = 200_000  # relative std error of the sample std: 1 / sqrt(2 n) = 0.0016
    x = sde.prior_sample(key, (n,))
    alpha, sigma = sde.marginal(sde.t_max)
    assert float(jnp.std(x)) == pytest.approx(float(sigma), rel=0.008)
    assert abs(float(jnp.mean(x))) < 5 * float(sigma) / math.sqrt(n)
    y = sde.prior_sample(key, (n,), t=0.05, data_std=2.0)
    alpha, sigma = sde.marginal(0.05)
    assert float(jnp.std(y)) == pytest.approx(float(jnp.sqrt(sigma**2 + 4 * alpha**2)), rel=0.008)
    with pytest.raises(ValueError, match="scalar time"):
        sde.prior_sample(key, (3,), t=jnp.ones(3))


@pytest.mark.parametrize("sde", SDES[:1] + SDES[2:3], ids=["ve", "vp"])
def test_reverse_drift(sde: SDE) -> None:
    """f - g^2 score (SDE) and f - 1/2 g^2 score (ODE), with per-sample times broadcast."""
    x = jax.random.normal(jax.random.key(1), (3, 4, 5))
    score = jax.random.normal(jax.random.key(2), (3, 4, 5))
    t = jnp.array([0.01, 0.3, 0.8])
    g2 = (sde.diffusion(t) ** 2)[:, None, None]
    np.testing.assert_allclose(
        sde.reverse_drift(x, t, score), sde.drift(x, t) - g2 * score, rtol=1e-12
    )
    np.testing.assert_allclose(
        sde.reverse_drift(x, t, score, probability_flow=True),
        sde.drift(x, t) - 0.5 * g2 * score,
        rtol=1e-12,
    )
    # A scalar time equals the same time repeated per sample.
    np.testing.assert_allclose(
        sde.reverse_drift(x, 0.3, score), sde.reverse_drift(x, jnp.full(3, 0.3), score)
    )


def test_broadcast_to_state() -> None:
    x = jnp.zeros((3, 4, 5))
    assert broadcast_to_state(jnp.ones(3), x).shape == (3, 1, 1)
    assert broadcast_to_state(2.0, x).shape == ()
    with pytest.raises(ValueError, match="leading axes"):
        broadcast_to_state(jnp.ones(4), x)


# --------------------------------------------------------------------------------------------------
# Dataclass / pytree behaviour and validation
# --------------------------------------------------------------------------------------------------


def test_sdes_are_static_pytrees() -> None:
    """No leaves; usable as a traced jit argument and as a static one; frozen and hashable."""
    ve = VESDE(26.0, t_max=0.1)
    assert isinstance(ve, SDE) and isinstance(VPSDE(), SDE)
    assert jax.tree_util.tree_leaves(ve) == []
    assert jax.tree_util.tree_unflatten(*reversed(jax.tree_util.tree_flatten(ve))) == ve
    as_arg = jax.jit(lambda sde, t: sde.std(t))(ve, 0.1)
    as_static = jax.jit(lambda sde, t: sde.std(t), static_argnums=0)(ve, 0.1)
    assert float(as_arg) == pytest.approx(float(ve.std(0.1)))
    assert float(as_static) == pytest.approx(float(ve.std(0.1)))
    assert hash(ve) == hash(VESDE(26.0, t_max=0.1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ve.sigma = 3.0  # type: ignore[misc]
    vmapped = jax.vmap(VPSDE().std)(jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(vmapped, VPSDE().std(jnp.array([0.1, 0.2])))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: VESDE(1.0), "sigma"),
        (lambda: VESDE(26.0, t_min=0.0), "t_min"),
        (lambda: VESDE(26.0, t_min=0.5, t_max=0.1), "t_min"),
        (lambda: VPSDE(beta_min=-1.0), "beta_min"),
        (lambda: VPSDE(beta_min=5.0, beta_max=1.0), "beta_max"),
        (lambda: VPSDE(t_max=float("nan")), "t_max"),
    ],
)
def test_sde_validation(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------


def test_karras_schedule_paper_a() -> None:
    """10 steps: 10 points from 0.1 to 1e-3 with sigma^{1/7} equally spaced, then 0."""
    ve = VESDE(26.0)
    times = schedules.karras(10, 1e-3, 0.1, ve)
    assert times.shape == (11,)
    assert float(times[0]) == 0.1 and float(times[9]) == 1e-3 and float(times[10]) == 0.0
    assert bool(jnp.all(jnp.diff(times) < 0))
    root = ve.std(times[:10]) ** (1 / 7)
    np.testing.assert_allclose(jnp.diff(root), jnp.diff(root)[0], rtol=1e-9)
    # rho = 7 packs the points near t_min: the median point is at t < 0.02.
    assert float(times[5]) < 0.02


@pytest.mark.parametrize("sde", [VESDE(26.0), VPSDE()], ids=["ve", "vp"])
def test_schedule_spacings(sde: SDE) -> None:
    """uniform: equal steps in t; log_sigma: equal steps in log-SNR; final_zero=False ends at
    t_min with num_steps + 1 points; karras with large rho approaches log_sigma."""
    n = 8
    uni = schedules.uniform(n, 1e-3, 0.9, sde, final_zero=False)
    assert uni.shape == (n + 1,)
    np.testing.assert_allclose(jnp.diff(uni), (1e-3 - 0.9) / n, rtol=1e-9)
    logs = schedules.log_sigma(n, 1e-3, 0.9, sde)
    assert logs.shape == (n + 1,) and float(logs[-1]) == 0.0 and float(logs[-2]) == 1e-3
    lam = sde.log_snr(logs[:-1])
    np.testing.assert_allclose(jnp.diff(lam), jnp.diff(lam)[0], rtol=1e-8)
    k_big = schedules.karras(n, 1e-3, 0.9, sde, rho=1e4)
    np.testing.assert_allclose(k_big, logs, rtol=2e-3)


def test_schedule_edge_cases_and_validation() -> None:
    ve = VESDE(26.0)
    np.testing.assert_array_equal(schedules.karras(1, 1e-3, 0.4, ve), [0.4, 0.0])
    np.testing.assert_allclose(schedules.karras(1, 1e-3, 0.4, ve, final_zero=False), [0.4, 1e-3])
    assert schedules.get_schedule("log_sigma") is schedules.log_sigma
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.get_schedule("cosine")
    with pytest.raises(ValueError, match="num_steps"):
        schedules.karras(0, 1e-3, 0.1, ve)
    with pytest.raises(ValueError, match="num_steps"):
        schedules.uniform(2.0, 1e-3, 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t_min < t_max"):
        schedules.log_sigma(4, 0.2, 0.1, ve)
    with pytest.raises(ValueError, match="rho"):
        schedules.karras(4, 1e-3, 0.1, ve, rho=0.0)
