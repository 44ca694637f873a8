"""ClosureModel on batch slices (model.batch_chunk): the same samples, forward and training
gradients as one call on the whole batch, and a clear error for a bad setting (the regression
baseline's slices: tests/models/test_regression.py)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from closurejax.diffusion import conditional, kinds, losses
from closurejax.models import chunking
from experiments.configs.demo import get_config
from tests.arrays import assert_close, random_params

N, B = 16, 5
STATS = {n: {"mean": 0.1, "std": 2.0} for n in ("omega", "sparse_interpolated", "target")}


def tiny(kind: str, batch_chunk=None) -> kinds.Model:
    config = get_config().to_dict()
    config["model"].update(width=4, modes=2, depth=1, embed_dim=8, kind=kind)
    config["model"]["batch_chunk"] = batch_chunk
    return kinds.from_config(config, STATS)


def fields(seed: int) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    names = ("omega", "sparse_interpolated", "target")
    return {n: jax.random.normal(k, (B, N, N)) for n, k in zip(names, keys, strict=True)}


def test_slices_give_the_samples_forward_and_gradients_of_one_call():
    whole, sliced = tiny("score", None), tiny("score", 2)  # 2 slices of 2, remainder of 1
    assert whole.chunk_size(N) is None and sliced.chunk_size(N) == 2
    params = random_params(whole, N)
    batch = fields(1)
    cond = {n: batch[n] for n in whole.condition_names}
    sampler = conditional.sampler_from_config(get_config().sampler, num_steps=2)
    key = jax.random.PRNGKey(2)
    samples = [
        jax.jit(m.sample, static_argnums=3)(params, key, cond, sampler) for m in (whole, sliced)
    ]
    assert samples[0].shape == (B, N, N)
    assert_close(samples[1], samples[0])
    t = jnp.linspace(0.01, 0.4, B)
    forward = sliced.forward(params, batch["target"], t, cond)
    assert_close(forward, jax.jit(whole.network.apply)(params, batch["target"], t, cond))
    four = {n: v[:4] for n, v in batch.items()}  # 2 slices of 2 (the remainder path is above)
    stored = dataclasses.replace(sliced, remat_slices=False)  # slices' activations kept
    grads = [
        jax.jit(jax.grad(lambda p, m=m: m.loss(p, four, key)[0]))(params)
        for m in (whole, sliced, stored)
    ]
    for g_whole, g_sliced, g_stored in zip(*map(jax.tree.leaves, grads), strict=True):
        assert_close(g_sliced, g_whole, 1e-4)
        assert_close(g_stored, g_sliced, 1e-5)


def test_auto_follows_the_cache_rule_and_bad_settings_are_refused():
    model = tiny("score", "auto")
    assert model.chunk_size(64) == chunking.auto_chunk(4 * 4 * 64 * 64)
    with pytest.raises(ValueError, match=r"model.batch_chunk=-2 is invalid"):
        tiny("score", -2)
    with pytest.raises(ValueError, match=r"model.batch_chunk='some' is invalid"):
        dataclasses.replace(model, batch_chunk="some")
    assert not hasattr(tiny("regression"), "forward")  # the baseline has no score network


def test_log_sigma_training_times_fill_the_sampler_window_in_log_noise_level():
    """t_sampling="sampler_range_log_sigma": the loss draws its times log-uniformly in σ(t) over
    the sampler's window (the loss of `losses.log_sigma_t`, not of uniform t); an unknown value
    is refused in one line naming the allowed."""

    def model(t_sampling: str, kind: str = "score") -> kinds.Model:
        config = get_config().to_dict()
        config["model"].update(width=4, modes=2, depth=1, embed_dim=8, kind=kind)
        config["diffusion"]["t_sampling"] = t_sampling
        if kind == "latent":
            config["model"]["conditions"] = ("omega",)
        config["sampler"].update(t_min=1e-5, t_max=0.1)
        return kinds.from_config(config, STATS)

    logs, uniform = model("sampler_range_log_sigma"), model("sampler_range")
    assert logs.train_times == uniform.train_times == (1e-5, 0.1)
    assert (logs.train_time_spacing, uniform.train_time_spacing) == ("log_sigma", "uniform")
    params = random_params(logs, N)
    batch, key = fields(3), jax.random.PRNGKey(4)
    cond = {n: batch[n] for n in logs.condition_names}
    score = logs._score_fn(params, logs._encode(params, cond, fold=False), fold=False)
    times = losses.log_sigma_t(1e-5, 0.1, logs.sde)
    expected = losses.dsm_loss(key, batch["target"], score, logs.sde, times)
    assert_close(logs.loss(params, batch, key)[0], expected, 1e-5)
    in_t = losses.dsm_loss(key, batch["target"], score, logs.sde, losses.uniform_t(1e-5, 0.1))
    assert_close(uniform.loss(params, batch, key)[0], in_t, 1e-5)
    assert abs(float(in_t) / float(expected) - 1) > 1e-3  # the two laws give different losses
    latent = model("sampler_range_log_sigma", "latent")
    assert latent.train_time_spacing == "log_sigma" and latent.train_times == (1e-5, 0.1)
    with pytest.raises(ValueError, match=r"^diffusion.t_sampling='log' is invalid; allowed: "):
        model("log")


def edm_config(field: str, value: str | None, kind: str = "score", sigma_data: float = 0.5) -> dict:
    """A tiny EDM-preconditioned config of `kind` with `diffusion.<field> = value` (None: the
    field deleted, as in a config saved before it existed)."""
    config = get_config().to_dict()
    config["model"].update(width=4, modes=2, depth=1, embed_dim=8, kind=kind)
    config["diffusion"].update(parameterization="edm", sigma_data=sigma_data)
    if value is None:
        del config["diffusion"][field]
    else:
        config["diffusion"][field] = value
    if kind == "latent":
        config["model"]["conditions"] = ("omega",)
    return config


def test_c_noise_noise_input_feeds_the_network_a_quarter_log_sigma():
    """diffusion.noise_input="c_noise": the score network's noise input is ¼ ln σ(t) (EDM), not t,
    for the P-CDM and the L-CDM; "t" stays the default; an unknown value is refused in one line."""

    def config(noise_input: str | None, kind: str = "score") -> dict:
        return edm_config("noise_input", noise_input, kind)

    log_input, t_input = (kinds.from_config(config(v), STATS) for v in ("c_noise", "t"))
    assert kinds.from_config(config(None), STATS).noise_input == "t" == t_input.noise_input
    params = random_params(log_input, N)
    batch = fields(5)
    features = log_input.encode(params, {n: batch[n] for n in log_input.condition_names})
    x, t = batch["target"], jnp.linspace(1e-3, 0.1, B)
    denoise = log_input.network.apply

    def net(x: jax.Array, tau: jax.Array) -> jax.Array:
        return denoise(params, x, tau, features, method=log_input.network.denoise)

    sde = log_input.sde
    for model, expected in ((log_input, "c_noise"), (t_input, "t")):
        wanted = losses.make_score_fn(net, sde, "edm", 0.5, expected)(x, t)
        assert_close(model.score_fn(params, features)(x, t), wanted, 1e-5)
    gap = log_input.score_fn(params, features)(x, t) - t_input.score_fn(params, features)(x, t)
    assert float(jnp.max(jnp.abs(gap))) > 1e-3  # the two inputs give different scores
    latent = kinds.from_config(config("c_noise", "latent"), STATS)
    score_params = latent.init_score(jax.random.PRNGKey(6), 32)  # an 8² latent grid
    z = jax.random.normal(jax.random.PRNGKey(7), (B, 8, 8))
    z_features = latent.condition_features(score_params, z)
    net = latent.score_network

    def latent_net(z: jax.Array, tau: jax.Array) -> jax.Array:
        return net.apply(score_params, z, tau, z_features, method=net.denoise)

    wanted = losses.make_score_fn(latent_net, latent.sde, "edm", 0.5, "c_noise")(z, t)
    assert_close(latent.score_fn(score_params, z_features)(z, t), wanted, 1e-5)
    with pytest.raises(ValueError, match=r"^diffusion.noise_input='sigma' is invalid; allowed: "):
        kinds.from_config(config("sigma"), STATS)
    with pytest.raises(ValueError, match=r"^diffusion.noise_input='sigma' is invalid; allowed: "):
        kinds.from_config(config("sigma", "latent"), STATS)


def test_edm_loss_weighting_weighs_the_denoiser_error_by_karras_lambda():
    """diffusion.loss_weighting="edm": the P-CDM's loss is mean_b λ(s) Σ |D − x_0|² with
    λ(s) = (s² + s_d²) / (s s_d)² (Karras et al. 2022) for the denoiser D = x_t + σ² score (VE),
    recomputed here from the model's score; "sigma2" (the default, and a config saved before the
    field) is Σ |D − x_0|² / s²; the L-CDM's latent DSM takes the same weighting; an unknown value
    is refused in one line."""

    def config(weighting: str | None, kind: str = "score") -> dict:
        return edm_config("loss_weighting", weighting, kind, sigma_data=0.3)

    edm, sigma2 = (kinds.from_config(config(v), STATS) for v in ("edm", "sigma2"))
    assert kinds.from_config(config(None), STATS).loss_weighting == "sigma2"
    params = random_params(edm, N)
    batch, key = fields(8), jax.random.PRNGKey(9)
    x0 = edm.normalise("target", batch["target"])
    features = edm.encode(params, {n: batch[n] for n in edm.condition_names})
    t_key, z_key = jax.random.split(key)  # dsm_loss's split of its key
    t = losses.sampler_range_t(edm.sde, *edm.train_times, spacing=edm.train_time_spacing)(t_key, B)
    sigma = edm.sde.std(t)[:, None, None]
    x_t = x0 + sigma * jax.random.normal(z_key, x0.shape)
    denoised = x_t + sigma**2 * edm.score_fn(params, features)(x_t, t)
    error2 = jnp.sum((denoised - x0) ** 2, axis=(1, 2))
    s, sd = edm.sde.noise_level(t), 0.3
    assert_close(edm.loss(params, batch, key)[0], jnp.mean((s**2 + sd**2) / (s * sd) ** 2 * error2))
    assert_close(sigma2.loss(params, batch, key)[0], jnp.mean(error2 / s**2), 1e-5)

    latent_edm, latent_sigma2 = (
        kinds.from_config(config(v, "latent"), STATS) for v in ("edm", "sigma2")
    )
    score_params = latent_edm.init_score(jax.random.PRNGKey(6), 32)  # an 8² latent grid
    z = jax.random.normal(jax.random.PRNGKey(7), (2, B, 8, 8))
    latents = {"z_target": z[0], "z_omega": z[1]}
    z_features = latent_edm.condition_features(score_params, z[1])
    score = latent_edm.score_fn(score_params, z_features)
    times = latent_edm._t_sampler()
    for model, weighting in (
        (latent_edm, losses.edm_weighting(latent_edm.sde, 0.3)),
        (latent_sigma2, "sigma2"),
    ):
        wanted = losses.dsm_loss(key, z[0], score, model.sde, times, weighting)
        assert_close(model.latent_loss(score_params, latents, key)[0], wanted, 1e-5)
    for kind in ("score", "latent"):
        with pytest.raises(ValueError, match=r"^diffusion.loss_weighting='karras' is invalid; "):
            kinds.from_config(config("karras", kind), STATS)
