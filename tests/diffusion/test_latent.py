"""Tests for closurejax.diffusion.latent (paper B's L-CDM; arXiv 2506.20771).

Sampling is checked against an exact Gaussian latent model: ``z_omega = 0.5 omega[:, ::2, ::2]``,
``z_H | z_omega ~ N(mu(z_omega), S^2)`` with ``mu(z) = A z^T + C`` (transpose of the 2x2 latent),
exact VE-perturbed score ``-(z - mu) / (S^2 + sigma(t)^2)``, and the linear decoder
``H = D kron(z_H, 1_{2x2}) + OFF``, so ``H`` has per-pixel mean ``D mu + OFF`` and std ``D S``.
The joint loss is checked term by term with tiny linear "networks" whose parameters are dicts.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.diffusion import latent, losses
from closurejax.diffusion.samplers import PAPER_B_SAMPLER, SamplerConfig
from closurejax.diffusion.sde import VESDE

A, C, S = 0.8, 0.1, 0.3
D, OFF = 2.0, -0.5
VE = VESDE(26.0, t_max=1.0)


def encode_linear(cond: jax.Array) -> jax.Array:
    """``[B, 4, 4] -> [B, 2, 2]``: ``0.5 omega[:, ::2, ::2]``."""
    return 0.5 * cond[:, ::2, ::2]


def latent_mean(z_cond: jax.Array) -> jax.Array:
    """``mu(z_omega) = A z_omega^T + C``, ``[B, 2, 2]``."""
    return A * jnp.swapaxes(z_cond, 1, 2) + C


def exact_score(z: jax.Array, t: jax.Array, z_cond: jax.Array) -> jax.Array:
    """Exact VE-perturbed score of ``N(mu(z_cond), S^2)``: ``-(z - mu) / (S^2 + sigma(t)^2)``."""
    var = S**2 + VE.std(t)[:, None, None] ** 2
    return -(z - latent_mean(z_cond)) / var


def decode_linear(z: jax.Array) -> jax.Array:
    """``[B, 2, 2] -> [B, 4, 4]``: ``D kron(z, 1_{2x2}) + OFF``."""
    return D * jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2) + OFF


def conditions(num_distinct: int, repeats: int, seed: int = 0) -> jax.Array:
    """``num_distinct`` random ``[4, 4]`` conditions, each repeated ``repeats`` times."""
    base = jax.random.normal(jax.random.key(seed), (num_distinct, 4, 4))
    return jnp.repeat(base, repeats, axis=0)


# --------------------------------------------------------------------------------------------------
# Sampling with an exact Gaussian latent score
# --------------------------------------------------------------------------------------------------


# 4 conditions x 2000 samples x 4 latent entries. Standard errors: per-entry latent mean
# S / sqrt(2000) = 0.0067; standardised residual mean over all 32 000 entries 0.0056; its std,
# relative, 1 / sqrt(64 000) = 0.004. Known biases: starting from the prior N(0, sigma_T^2)
# instead of N(mu, S^2 + sigma_T^2) maps the mean to mu (1 - c) under the exact
# probability-flow ODE and to mu (1 - c^2) under the exact reverse SDE, with
# c = S / sqrt(S^2 + sigma_T^2) = 0.0295 at t_max = 1 (closurejax.diffusion.samplers; the
# expected means below include it); the final step from t_min = 1e-3 shrinks the std by
# 0.55 %; Euler-Maruyama discretisation adds ~1 % (tests/diffusion/test_samplers.py).
# Tolerances: latent mean 0.03 (4.5 SE), residual mean 0.03, std 2.5 % overall and 3 % per
# latent entry.
@pytest.mark.parametrize(
    ("sampler", "bias_power"),
    [
        (SamplerConfig(name="euler_maruyama", num_steps=200, t_min=1e-3, t_max=1.0), 2),
        (SamplerConfig(name="dpm_solver", num_steps=32, t_min=1e-3, t_max=1.0), 1),
    ],
    ids=["em200", "dpm32"],
)
def test_exact_gaussian_latent_law(sampler: SamplerConfig, bias_power: int) -> None:
    num_distinct, repeats = 4, 2000
    cond = conditions(num_distinct, repeats)
    sample = jax.jit(
        functools.partial(
            latent.latent_sample,
            encode_condition=encode_linear,
            decode_target=decode_linear,
            latent_score_fn=exact_score,
            sde=VE,
            sampler=sampler,
            latent_shape=(2, 2),
        )
    )
    out = np.asarray(sample(jax.random.key(1), cond=cond))
    assert out.shape == cond.shape
    # The decoder's duplicated pixels are identical, so the output is a decoded 2x2 latent.
    np.testing.assert_array_equal(out[:, 1::2, 1::2], out[:, ::2, ::2])
    z = (out[:, ::2, ::2] - OFF) / D  # the sampled latents, [B, 2, 2]
    sigma_t = float(VE.std(1.0))
    c = S / np.sqrt(S**2 + sigma_t**2)
    mu = np.asarray(latent_mean(encode_linear(cond))) * (1.0 - c**bias_power)

    # Conditional latent mean: per condition and latent entry.
    z_mean = z.reshape(num_distinct, repeats, 2, 2).mean(axis=1)
    mu_k = mu.reshape(num_distinct, repeats, 2, 2)[:, 0]
    np.testing.assert_allclose(z_mean, mu_k, atol=0.03)
    # The conditions differ enough that ignoring them would fail the check above.
    assert np.abs(mu_k - mu_k.mean(axis=0)).max() > 0.2

    # Standardised residuals are N(0, 1): latent std S, decoded std D S about mean D mu + OFF.
    residual = (out[:, ::2, ::2] - (D * mu + OFF)) / (D * S)
    assert abs(residual.mean()) < 0.03
    assert abs(residual.std() - 1.0) < 0.025
    per_entry_std = (z - mu).reshape(-1, 4).std(axis=0)
    np.testing.assert_allclose(per_entry_std, S, rtol=0.03)


# --------------------------------------------------------------------------------------------------
# The condition is encoded once and the target decoded once
# --------------------------------------------------------------------------------------------------


def _primitive_sites(jaxpr: Any, name: str, in_scan: bool = False) -> list[bool]:
    """For every equation of primitive ``name`` (recursively), whether it lies inside a scan."""
    sites = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            sites.append(in_scan)
        inner = in_scan or eqn.primitive.name == "scan"
        for value in eqn.params.values():
            for sub in value if isinstance(value, list | tuple) else (value,):
                if hasattr(sub, "eqns"):
                    sites += _primitive_sites(sub, name, inner)
                elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    sites += _primitive_sites(sub.jaxpr, name, inner)
    return sites


def test_condition_encoded_once_and_decoded_once() -> None:
    calls = {"encode": 0, "decode": 0}

    def encode(cond: jax.Array) -> jax.Array:  # the only `sin` in the program
        calls["encode"] += 1
        return jnp.sin(cond[:, ::2, ::2])

    def decode(z: jax.Array) -> jax.Array:  # the only `tanh` in the program
        calls["decode"] += 1
        return jnp.tanh(jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2))

    sampler = SamplerConfig(name="euler_maruyama", num_steps=5, t_min=1e-3, t_max=1.0)
    cond = conditions(2, 3)

    def run(key: jax.Array, c: jax.Array) -> jax.Array:
        return latent.latent_sample(key, encode, decode, exact_score, VE, sampler, c, (2, 2))

    run(jax.random.key(0), cond)
    assert calls == {"encode": 1, "decode": 1}

    jaxpr = jax.make_jaxpr(run)(jax.random.key(0), cond).jaxpr
    assert _primitive_sites(jaxpr, "sin") == [False]  # once, outside the sampler's scan
    assert _primitive_sites(jaxpr, "tanh") == [False]
    assert _primitive_sites(jaxpr, "scan")  # the sampler loop is there

    # The check can fail: encoding inside the score puts the encoder in the scan body.
    def naive(key: jax.Array, c: jax.Array) -> jax.Array:
        z, _ = sampler.sample(key, lambda z, t: exact_score(z, t, encode(c)), VE, (6, 2, 2))
        return decode(z)

    assert _primitive_sites(jax.make_jaxpr(naive)(jax.random.key(0), cond).jaxpr, "sin") == [True]


# --------------------------------------------------------------------------------------------------
# latent_sample: errors of the bound functions
# --------------------------------------------------------------------------------------------------


def test_latent_sample_refuses_bad_shapes_and_an_encoder_that_changes_the_batch() -> None:
    key = jax.random.key(0)

    def bad_encoder(c: jax.Array) -> jax.Array:
        return encode_linear(c)[:1]

    with pytest.raises(ValueError, match=r"encode_condition returned shape \(1, 2, 2\).*2"):
        latent.latent_sample(
            key, bad_encoder, decode_linear, exact_score, VE, PAPER_B_SAMPLER,
            jnp.zeros((2, 4, 4)), (2, 2),
        )  # fmt: skip
    with pytest.raises(ValueError, match="latent_shape"):
        latent.latent_sample(
            key, encode_linear, decode_linear, exact_score, VE, PAPER_B_SAMPLER,
            jnp.zeros((2, 4, 4)), (2, 0),
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"\[batch, n, n\].*\(2, 4, 5\)"):
        latent.latent_sample(
            key, encode_linear, decode_linear, exact_score, VE, PAPER_B_SAMPLER,
            jnp.zeros((2, 4, 5)), (2, 2),
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Joint loss
# --------------------------------------------------------------------------------------------------

B, N, LAT_T, LAT_C = 6, 4, 3, 2
SDE_B = VESDE(30.0, t_max=0.4)


def _params(seed: int = 0) -> dict[str, dict[str, jax.Array]]:
    k = iter(jax.random.split(jax.random.key(seed), 8))
    r = lambda *shape: 0.3 * jax.random.normal(next(k), shape)  # noqa: E731
    return {
        "enc_t": {"w": r(N * N, LAT_T)},
        "dec_t": {"w": r(LAT_T, N * N)},
        "enc_c": {"w": r(N * N, LAT_C)},
        "dec_c": {"w": r(LAT_C, N * N)},
        "score": {"a": r(LAT_T, LAT_T), "c": r(LAT_C, LAT_T), "b": r(LAT_T)},
    }


def _enc(p: dict, x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1) @ p["w"]


def _dec(p: dict, z: jax.Array) -> jax.Array:
    return (z @ p["w"]).reshape(z.shape[0], N, N)


def _score(p: dict, z: jax.Array, t: jax.Array, zc: jax.Array) -> jax.Array:
    return z @ p["a"] + zc @ p["c"] + t[:, None] * p["b"]


def _joint(params: dict, key: jax.Array, batch: dict, **kwargs: Any) -> tuple[jax.Array, dict]:
    return latent.joint_latent_loss(
        key,
        batch,
        encode_target=functools.partial(_enc, params["enc_t"]),
        decode_target=functools.partial(_dec, params["dec_t"]),
        encode_condition=functools.partial(_enc, params["enc_c"]),
        decode_condition=functools.partial(_dec, params["dec_c"]),
        latent_score_fn=functools.partial(_score, params["score"]),
        sde=SDE_B,
        **kwargs,
    )


def _batch(seed: int = 1) -> dict[str, jax.Array]:
    kt, kc = jax.random.split(jax.random.key(seed))
    return {
        "target": jax.random.normal(kt, (B, N, N)),
        "omega": jax.random.normal(kc, (B, N, N)),
    }


def _hand_kl(z: np.ndarray) -> float:
    m, v = z.mean(axis=0), z.var(axis=0)
    return float(0.5 * np.mean(v + m**2 - 1.0 - np.log(v)))


def test_joint_loss_terms_match_hand_computation() -> None:
    params, batch, key = _params(), _batch(), jax.random.key(7)
    loss, aux = jax.jit(_joint)(params, key, batch)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    h, w = (np.asarray(batch[n], np.float64) for n in ("target", "omega"))
    z_h = h.reshape(B, -1) @ p["enc_t"]["w"]
    z_w = w.reshape(B, -1) @ p["enc_c"]["w"]
    mse_h = np.mean(((z_h @ p["dec_t"]["w"]).reshape(B, N, N) - h) ** 2)
    mse_w = np.mean(((z_w @ p["dec_c"]["w"]).reshape(B, N, N) - w) ** 2)
    # DSM of the hand-computed latents, the score conditioned on the hand-computed z_omega.
    zw = jnp.asarray(z_w, jnp.float32)
    dsm = jax.jit(
        lambda zh: losses.dsm_loss(key, zh, lambda z, t: _score(params["score"], z, t, zw), SDE_B)
    )(jnp.asarray(z_h, jnp.float32))
    kl = _hand_kl(z_h)
    assert set(aux) == {"mse_target", "mse_condition", "dsm", "kl"}
    assert all(jnp.shape(v) == () for v in aux.values())
    np.testing.assert_allclose(aux["mse_target"], mse_h, rtol=1e-5)
    np.testing.assert_allclose(aux["mse_condition"], mse_w, rtol=1e-5)
    np.testing.assert_allclose(aux["dsm"], dsm, rtol=1e-5)
    np.testing.assert_allclose(aux["kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(loss, 10 * mse_h + 0.1 * mse_w + 0.1 * dsm + 0.01 * kl, rtol=1e-5)
    # Custom weights reweight the same terms.
    reweighted = functools.partial(_joint, weights=(1.0, 2.0, 0.0, 3.0))
    loss2, _ = jax.jit(reweighted)(params, key, batch)
    np.testing.assert_allclose(loss2, mse_h + 2 * mse_w + 3 * kl, rtol=1e-5)


def test_joint_loss_gradients_reach_all_networks() -> None:
    params, batch, key = _params(), _batch(), jax.random.key(3)
    grads = jax.jit(jax.grad(lambda p: _joint(p, key, batch)[0]))(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert float(jnp.linalg.norm(g)) > 1e-6, jax.tree_util.keystr(path)
    # The DSM term alone reaches both encoders through z_H and z_omega (joint training, no
    # stop_gradient) but not the decoders.
    dsm_grads = jax.jit(jax.grad(lambda p: _joint(p, key, batch)[1]["dsm"]))(params)
    assert float(jnp.linalg.norm(dsm_grads["enc_t"]["w"])) > 1e-6
    assert float(jnp.linalg.norm(dsm_grads["enc_c"]["w"])) > 1e-6
    assert float(jnp.linalg.norm(dsm_grads["score"]["c"])) > 1e-6
    assert float(jnp.linalg.norm(dsm_grads["dec_t"]["w"])) == 0.0
    assert float(jnp.linalg.norm(dsm_grads["dec_c"]["w"])) == 0.0


def test_batch_kl() -> None:
    z = jax.random.normal(jax.random.key(0), (64, 2, 3))
    standard = (z - z.mean(axis=0)) / z.std(axis=0)
    assert abs(float(latent.batch_kl(standard))) < 1e-6
    for other in (2.0 * standard + 1.0, 0.5 * standard, standard + 0.3, z):
        value = float(latent.batch_kl(other))
        assert value > 1e-3
        np.testing.assert_allclose(value, _hand_kl(np.asarray(other, np.float64)), rtol=1e-4)
    # A collapsed batch gives a large finite penalty (eps inside the log).
    collapsed = float(latent.batch_kl(jnp.ones((8, 3))))
    assert np.isfinite(collapsed) and collapsed > 8.0
    with pytest.raises(ValueError, match="batch >= 2"):
        latent.batch_kl(jnp.ones((1, 3)))


def test_joint_loss_errors() -> None:
    params, batch, key = _params(), _batch(), jax.random.key(0)
    with pytest.raises(ValueError, match="paired"):
        _joint(params, key, {"target": batch["target"], "omega": batch["omega"][:4]})
    with pytest.raises(ValueError, match="no field 'omega'"):
        _joint(params, key, {"target": batch["target"]})
    with pytest.raises(ValueError, match="weights"):
        _joint(params, key, batch, weights=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="weights"):
        _joint(params, key, batch, weights=(1.0, -1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"\[batch, n, n\]"):
        _joint(params, key, {"target": batch["target"][0], "omega": batch["omega"]})
