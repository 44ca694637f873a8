"""Tests for closurejax.diffusion.losses: denoising score matching and score parameterisations.

For data ``N(mu, s^2)`` per pixel and ``x_t = alpha x_0 + sigma z``, the exact score is
``s*(x) = -(x - alpha mu) / v`` with ``v = alpha^2 s^2 + sigma^2``, and the residual
``sigma s*(x_t) + z`` is Gaussian with variance ``alpha^2 s^2 / v`` per pixel, so the
sigma^2-weighted DSM loss of the exact score is ``D alpha^2 s^2 / v`` (``D`` pixels), not zero.
Any other score adds ``sigma^2 E|score - s*|^2``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.diffusion import losses
from closurejax.diffusion.sde import SDE, VESDE, VPSDE, broadcast_to_state

MU, S = 0.7, 0.3
PIXELS = (2, 2)
D = 4


def gaussian_score(sde: SDE, mu: float = MU, s: float = S) -> Callable:
    """Exact score of ``N(mu, s^2)`` per pixel under ``sde``: ``[B, ...], [B] -> [B, ...]``."""

    def score(x: jax.Array, t: jax.Array) -> jax.Array:
        alpha, sigma = sde.marginal(t)
        alpha, sigma = broadcast_to_state(alpha, x), broadcast_to_state(sigma, x)
        return -(x - alpha * mu) / (alpha**2 * s**2 + sigma**2)

    return score


def data(batch: int, seed: int = 0) -> jax.Array:
    return MU + S * jax.random.normal(jax.random.key(seed), (batch, *PIXELS))


def constant_t(t: float) -> losses.TSampler:
    return lambda key, batch: jnp.full((batch,), t)


def minimum(sde: SDE, t: jax.Array | float) -> jax.Array:
    """Irreducible sigma^2-weighted DSM loss per sample at time t: D alpha^2 s^2 / v."""
    alpha, sigma = sde.marginal(t)
    return D * alpha**2 * S**2 / (alpha**2 * S**2 + sigma**2)


# --------------------------------------------------------------------------------------------------
# (d) The loss of the exact score is the analytic minimum; a wrong score pays the analytic excess
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sde", [VESDE(26.0), VPSDE()], ids=["ve", "vp"])
@pytest.mark.parametrize("t", [1e-3, 0.05, 0.3])
def test_exact_score_attains_the_analytic_minimum(sde: SDE, t: float) -> None:
    """At fixed t the loss is D alpha^2 s^2 / v, to the Monte Carlo error.

    The summand is a chi-square: the relative standard error of the mean over B = 100 000
    samples of D = 4 pixels is sqrt(2 / (B D)) = 0.0022; tolerance 1 % (4.5 standard errors);
    measured |deviation| <= 0.23 %.
    """
    loss = losses.dsm_loss(
        jax.random.key(1), data(100_000), gaussian_score(sde), sde, t_sampler=constant_t(t)
    )
    expected = float(minimum(sde, t))
    assert expected > 0.05  # not zero: the irreducible term
    assert float(loss) == pytest.approx(expected, rel=0.01)


def test_minimum_over_the_sampler_range_matches_quadrature() -> None:
    """Default times (U[t_min, t_max] of the SDE; paper A's sampling window here): the loss is the
    average of the per-time minimum, computed by quadrature. Measured deviation 0.06 %."""
    sde = VESDE(26.0, t_min=1e-3, t_max=0.1)
    grid = np.linspace(1e-3, 0.1, 20_001)
    values = np.asarray(minimum(sde, jnp.asarray(grid)), dtype=np.float64)
    expected = float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)) / (0.1 - 1e-3))
    loss = losses.dsm_loss(jax.random.key(2), data(100_000), gaussian_score(sde), sde)
    assert float(loss) == pytest.approx(expected, rel=0.01)


def test_wrong_scores_pay_the_analytic_excess() -> None:
    """With the same key (same t and z): a shift c adds D sigma^2 c^2 and a wrong data std s' adds
    D sigma^2 (1/v' - 1/v)^2 v, both within 3 % (measured: 0.8 % and 0.8 %)."""
    sde = VESDE(26.0)
    t = 0.05
    x0 = data(100_000)
    key = jax.random.key(3)
    exact = gaussian_score(sde)
    base = losses.dsm_loss(key, x0, exact, sde, t_sampler=constant_t(t))
    sigma = float(sde.std(t))
    c = 0.5 / sigma

    def shifted(x: jax.Array, t: jax.Array) -> jax.Array:
        return exact(x, t) + c

    excess_shift = losses.dsm_loss(key, x0, shifted, sde, t_sampler=constant_t(t)) - base
    assert float(excess_shift) == pytest.approx(D * sigma**2 * c**2, rel=0.03)
    wrong_std = gaussian_score(sde, s=0.5)
    v, v_wrong = S**2 + sigma**2, 0.5**2 + sigma**2
    excess_std = losses.dsm_loss(key, x0, wrong_std, sde, t_sampler=constant_t(t)) - base
    assert float(excess_std) > 0
    assert float(excess_std) == pytest.approx(
        D * sigma**2 * (1 / v_wrong - 1 / v) ** 2 * v, rel=0.03
    )


def test_dsm_recovers_the_data_std() -> None:
    """Over the family score_theta = -(x - alpha mu) / (alpha^2 theta^2 + sigma^2), the jitted,
    vmapped loss (common random numbers) is smallest at theta = s = 0.3."""
    sde = VESDE(26.0, t_max=0.4)
    x0 = data(20_000)
    thetas = jnp.array([0.2, 0.25, 0.3, 0.35, 0.4])

    def loss_at(theta: jax.Array) -> jax.Array:
        return losses.dsm_loss(jax.random.key(4), x0, gaussian_score(sde, s=theta), sde)

    values, grads = jax.jit(jax.vmap(jax.value_and_grad(loss_at)))(thetas)
    assert int(jnp.argmin(values)) == 2
    assert abs(float(grads[2])) < 0.05 * abs(float(grads[0]))
    assert float(grads[0]) < 0 < float(grads[4])


def test_weightings_and_loss_formula() -> None:
    """dsm_loss computes mean_b lambda(t_b) sum (score + z / sigma)^2 with x_t = alpha x_0 + sigma z
    (rebuilt by hand from the same key split), for 'sigma2', 'none' and a callable weighting."""
    sde = VPSDE()
    x0 = data(64)
    key = jax.random.key(5)

    def net(x: jax.Array, t: jax.Array) -> jax.Array:
        return jnp.sin(3 * x) + t[:, None, None]

    t_key, z_key = jax.random.split(key)
    t = losses.sampler_range_t(sde)(t_key, 64)
    z = jax.random.normal(z_key, x0.shape)
    alpha, sigma = (a[:, None, None] for a in sde.marginal(t))
    residual2 = jnp.sum((net(alpha * x0 + sigma * z, t) + z / sigma) ** 2, axis=(1, 2))
    sig2 = sigma[:, 0, 0] ** 2
    np.testing.assert_allclose(losses.dsm_loss(key, x0, net, sde), jnp.mean(sig2 * residual2), 1e-5)
    np.testing.assert_allclose(
        losses.dsm_loss(key, x0, net, sde, weighting="none"), jnp.mean(residual2), rtol=1e-5
    )
    weight = losses.edm_weighting(sde, sigma_data=0.5)
    np.testing.assert_allclose(
        losses.dsm_loss(key, x0, net, sde, weighting=weight),
        jnp.mean(weight(t) * residual2),
        rtol=1e-5,
    )


# --------------------------------------------------------------------------------------------------
# Parameterisations
# --------------------------------------------------------------------------------------------------


def test_edm_preconditioning_normalises_inputs_and_targets() -> None:
    """For data of std s_d: Var(c_in x_hat) = 1 and Var((x_0 - c_skip x_hat) / c_out) = 1
    (Karras et al. 2022, Appendix B.6), and c_noise = log(s) / 4."""
    s = jnp.array([1e-3, 0.03, 0.5, 2.0, 80.0])
    sd = 0.5
    c_skip, c_out, c_in, c_noise = losses.edm_preconditioning(s, sd)
    np.testing.assert_allclose(c_in**2 * (sd**2 + s**2), 1.0, rtol=1e-5)
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * s**2) / c_out**2
    np.testing.assert_allclose(target_var, 1.0, rtol=1e-4)
    np.testing.assert_allclose(c_noise, jnp.log(s) / 4, rtol=1e-6)


@pytest.mark.parametrize("sde", [VESDE(26.0), VPSDE()], ids=["ve", "vp"])
@pytest.mark.parametrize("noise_input", ["t", "c_noise"])
def test_parameterisations_turn_the_ideal_network_into_the_exact_score(
    sde: SDE, noise_input: str
) -> None:
    """The network that outputs the ideal F gives the exact score through make_score_fn.

    score_over_sigma: F* = sigma s*. EDM: F* = (D* - c_skip x_hat) / c_out evaluated from the
    network's inputs (c_in x_hat, tau), with D* = E[x_0 | x_t] = (x + sigma^2 s*) / alpha. The
    network also checks it receives tau = t or c_noise = log(sigma / alpha) / 4.
    """
    sd = 0.4
    exact = gaussian_score(sde)
    t = jnp.array([1e-3, 0.02, 0.3, 0.9])
    x = MU + jax.random.normal(jax.random.key(6), (4, *PIXELS))
    expected_tau = t if noise_input == "t" else jnp.log(sde.noise_level(t)) / 4
    seen: dict[str, jax.Array] = {}

    def ideal_over_sigma(x_in: jax.Array, tau: jax.Array) -> jax.Array:
        seen["tau"] = tau
        return broadcast_to_state(sde.std(t), x_in) * exact(x_in, t)

    score = losses.make_score_fn(ideal_over_sigma, sde, "score_over_sigma", noise_input=noise_input)
    np.testing.assert_allclose(score(x, t), exact(x, t), rtol=1e-5)
    np.testing.assert_allclose(seen["tau"], expected_tau, rtol=1e-6)

    def ideal_edm(u: jax.Array, tau: jax.Array) -> jax.Array:
        seen["tau"] = tau
        alpha_1d, sigma_1d = sde.marginal(t)
        alpha, sigma = broadcast_to_state(alpha_1d, u), broadcast_to_state(sigma_1d, u)
        c_skip, c_out, c_in, _ = (
            broadcast_to_state(c, u) for c in losses.edm_preconditioning(sigma_1d / alpha_1d, sd)
        )
        x_hat = u / c_in
        denoised = (alpha * x_hat + sigma**2 * exact(alpha * x_hat, t)) / alpha
        return (denoised - c_skip * x_hat) / c_out

    score = losses.make_score_fn(ideal_edm, sde, "edm", sigma_data=sd, noise_input=noise_input)
    np.testing.assert_allclose(score(x, t), exact(x, t), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(seen["tau"], expected_tau, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Time samplers and validation
# --------------------------------------------------------------------------------------------------


def test_time_samplers() -> None:
    """uniform_t stays in range with the uniform mean; log_sigma_t is uniform in log-SNR; the
    sampler-range default is the SDE's window; the paper's training range is [2e-5, 2]."""
    sde = VESDE(26.0, t_max=0.4)
    n = 50_000
    t = losses.uniform_t(2e-5, 2.0)(jax.random.key(7), n)
    assert t.shape == (n,) and float(t.min()) >= 2e-5 and float(t.max()) <= 2.0
    assert float(t.mean()) == pytest.approx(1.0, abs=0.02)  # standard error 0.0026
    assert losses.PAPER_A_TRAIN_T_RANGE == (2e-5, 2.0)
    t = losses.log_sigma_t(1e-3, 0.4, sde)(jax.random.key(8), n)
    assert float(t.min()) >= 1e-3 * (1 - 1e-5) and float(t.max()) <= 0.4 * (1 + 1e-5)
    lam = sde.log_snr(t)
    lam_mid = 0.5 * float(sde.log_snr(1e-3) + sde.log_snr(0.4))
    assert float(jnp.mean(lam)) == pytest.approx(lam_mid, abs=0.02)
    t = losses.sampler_range_t(sde)(jax.random.key(9), n)
    assert float(t.min()) >= 1e-3 and float(t.max()) <= 0.4
    assert float(t.mean()) == pytest.approx(0.2005, abs=0.003)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: losses.make_score_fn(lambda x, t: x, VESDE(), "eps"), "parameterization"),
        (lambda: losses.make_score_fn(lambda x, t: x, VESDE(), noise_input="s"), "noise_input"),
        (lambda: losses.make_score_fn(lambda x, t: x, VESDE(), "edm", 0.0), "sigma_data"),
        (lambda: losses.uniform_t(0.5, 0.1), "t_min < t_max"),
        (lambda: losses.sampler_range_t(VESDE(), spacing="cosine"), "spacing"),
        (
            lambda: losses.dsm_loss(
                jax.random.key(0), jnp.ones((2, 3)), lambda x, t: x, VESDE(), weighting="snr"
            ),
            "weighting",
        ),
    ],
)
def test_validation(call: Callable, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
