"""Tests for closurejax.diffusion.latent_model (paper B's L-CDM built from a config).

A tiny model (16² fields → 8×8 latents: autoencoders with channels 4 → 8, 2-head attention; a
one-layer latent FNO) is built once per module. Its parameters have the tree of `model.init`
(`jax.eval_shape`) filled with NumPy draws scaled by 1/√fan-in: compiling Flax's random
initialisers costs more on CPU than the rest of this file (`model.init` itself is exercised by
tests/training/test_run_latent.py through the trainer). Every computation is jitted, several
checks per compiled program.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.diffusion import conditional, latent_model
from closurejax.diffusion.samplers import SamplerConfig
from experiments.configs import paper_b_lcdm_joint

N = 16
STATS = {"target": {"mean": 0.3, "std": 2.0}, "omega": {"mean": -1.0, "std": 5.0}}
SAMPLER = SamplerConfig(name="euler_maruyama", num_steps=3, t_min=1e-3, t_max=0.4)


def tiny_config(**latent) -> dict:
    config = paper_b_lcdm_joint.get_config().to_dict()
    config["data"]["coarse_size"] = N
    small = dict(
        ae_channels=(4, 8), ae_num_heads=2, ae_groups=2, width=8, modes=4, depth=1, embed_dim=16
    )
    config["latent"].update({**small, **latent})
    return config


def numpy_params(shapes, seed: int = 0):
    """Parameters shaped like `shapes`: GroupNorm scales 1, biases 0, weights N(0, 1/fan-in)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        if name.endswith("/scale"):
            return jnp.ones(leaf.shape, leaf.dtype)
        if name.endswith("/bias"):
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1])) if "spectral" not in name else 4 * leaf.shape[0]
        return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def model_and_params():
    model = latent_model.from_config(tiny_config(), STATS)
    shapes = jax.eval_shape(lambda k: model.init(k, N), jax.random.PRNGKey(0))
    return model, numpy_params(shapes)


def fields(batch: int, seed: int = 0) -> dict[str, jax.Array]:
    """Physical-unit fields with the statistics of STATS."""
    key = jax.random.PRNGKey(seed)
    z = jax.random.normal(key, (2, batch, N, N))
    return {
        "omega": STATS["omega"]["mean"] + STATS["omega"]["std"] * z[0],
        "target": STATS["target"]["mean"] + STATS["target"]["std"] * z[1],
    }


def norm(tree) -> float:
    return float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))


def test_closure_model_interface(model_and_params):
    model, params = model_and_params
    assert model.kind == "latent" and model.condition_names == ("omega",)
    assert model.sde.sigma == 30.0 and model.stats["omega"]["std"] == 5.0
    assert set(params) == {"target_ae", "omega_ae", "score"}
    assert model.levels == 1 and model.latent_size(N) == 8
    assert model.loss_weights == (10.0, 0.1, 0.1, 0.01)


@pytest.mark.slow  # ≈ 11 s on 2 cores
def test_shapes_and_dtypes_at_several_batch_sizes(model_and_params):
    model, params = model_and_params

    @jax.jit
    def everything(params, key, f):
        z = model.encode(params, "target", f["target"])
        return {
            "sample": model.sample(params, key, {"omega": f["omega"]}, SAMPLER),
            "z": z,
            "decoded": model.decode(params, "target", z),
            "target": model.reconstruct(params, "target", f["target"]),
            "omega": model.reconstruct(params, "omega", f["omega"]),
        }

    for batch in (1, 3):
        out = everything(params, jax.random.PRNGKey(1), fields(batch))
        assert out["z"].shape == (batch, 8, 8)
        for name in ("sample", "decoded", "target", "omega"):
            assert out[name].shape == (batch, N, N) and out[name].dtype == jnp.float32, name
            assert np.all(np.isfinite(np.asarray(out[name]))), name
        np.testing.assert_allclose(out["decoded"], out["target"], rtol=1e-5, atol=1e-5)


def test_sample_is_jit_and_vmap_able_with_params_as_arguments(model_and_params):
    model, params = model_and_params
    omega = fields(2)["omega"]
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    other = jax.tree.map(lambda x: 1.1 * x, params)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)

    def one(p, k, w):
        return model.sample(p, k, {"omega": w}, SAMPLER)

    @jax.jit
    def run(params, stacked, keys, omega):
        over_keys = jax.vmap(one, in_axes=(None, 0, None))(params, keys, omega)
        over_params = jax.vmap(one, in_axes=(0, None, None))(stacked, keys[0], omega)
        return over_keys, over_params

    ensemble, both = run(params, stacked, keys, omega)
    assert ensemble.shape == (3, 2, N, N) and both.shape == (2, 2, N, N)
    assert float(jnp.std(ensemble, axis=0).mean()) > 0  # different keys, different samples
    # same parameters and key through either vmap: the same sample
    np.testing.assert_allclose(both[0], ensemble[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(both[0], both[1])  # other parameters, another sample


def test_sample_and_reconstruction_are_in_physical_units(model_and_params):
    """Rescaling the statistics and the fields alike leaves the normalised computation
    unchanged: the outputs follow the target's statistics exactly."""
    model, params = model_and_params
    other_stats = {"target": {"mean": -4.0, "std": 0.5}, "omega": {"mean": 2.0, "std": 0.1}}
    other = dataclasses.replace(model, stats=other_stats)

    def to_other(name: str, x: jax.Array) -> jax.Array:
        s, o = STATS[name], other_stats[name]
        return (x - s["mean"]) / s["std"] * o["std"] + o["mean"]

    @jax.jit
    def both(params, key, f):
        g = {name: to_other(name, x) for name, x in f.items()}
        return (
            model.sample(params, key, {"omega": f["omega"]}, SAMPLER),
            other.sample(params, key, {"omega": g["omega"]}, SAMPLER),
            model.reconstruct(params, "target", f["target"]),
            other.reconstruct(params, "target", g["target"]),
        )

    a, b, ra, rb = both(params, jax.random.PRNGKey(4), fields(2))
    np.testing.assert_allclose(to_other("target", a), b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_other("target", ra), rb, rtol=1e-4, atol=1e-4)
    assert float(jnp.abs(a - b).max()) > 1  # the two models' outputs do differ


def test_joint_loss_terms_and_gradients_reach_all_three_networks(model_and_params):
    model, params = model_and_params
    batch = fields(4, seed=5)

    @jax.jit
    def run(params, batch, key):
        def loss_and_dsm(params):
            loss, aux = model.loss(params, batch, key)
            return jnp.stack([loss, aux["dsm"]]), (loss, aux)

        # one reverse pass, two cotangents: d(loss)/d(params) and d(DSM term)/d(params)
        jac, (loss, aux) = jax.jacrev(loss_and_dsm, has_aux=True)(params)
        grads, g_dsm = (jax.tree.map(lambda x, i=i: x[i], jac) for i in (0, 1))
        recon = {n: model.reconstruct(params, n, batch[n]) for n in ("target", "omega")}
        return loss, aux, grads, g_dsm, recon

    loss, aux, grads, g_dsm, recon = run(params, batch, jax.random.key(6))
    assert set(aux) == {"mse_target", "mse_condition", "dsm", "kl", "latent_std"}
    w = model.loss_weights
    expected = w[0] * aux["mse_target"] + w[1] * aux["mse_condition"]
    expected += w[2] * aux["dsm"] + w[3] * aux["kl"]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    # the reconstruction terms are MSEs of the normalised fields
    for name, term in (("target", "mse_target"), ("omega", "mse_condition")):
        mse = jnp.mean(((recon[name] - batch[name]) / STATS[name]["std"]) ** 2)
        np.testing.assert_allclose(aux[term], mse, rtol=1e-4)
    assert norm(grads["score"]) > 0
    for ae in ("target_ae", "omega_ae"):
        for part in ("encoder", "decoder"):
            assert norm(grads[ae]["params"][part]) > 0, (ae, part)
    # the DSM term alone reaches the score AND both encoders (through z_H and z_omega), not the
    # decoders (paper B: no stop-gradient on the latents)
    assert norm(g_dsm["score"]) > 0
    for ae in ("target_ae", "omega_ae"):
        assert norm(g_dsm[ae]["params"]["encoder"]) > 0, ae
        assert norm(g_dsm[ae]["params"]["decoder"]) == 0, ae


def test_two_stage_losses_train_disjoint_parameters(model_and_params):
    model, params = model_and_params
    batch = fields(4, seed=7)

    @jax.jit
    def run(params, batch, key):
        aes = {k: params[k] for k in ("target_ae", "omega_ae")}
        stage1 = jax.value_and_grad(model.reconstruction_loss, has_aux=True)(aes, batch, key)
        latents = model.encode_latents(aes, batch)
        stage2 = jax.value_and_grad(model.latent_loss, has_aux=True)(params["score"], latents, key)
        return stage1, latents, stage2, model.encode(params, "omega", batch["omega"])

    ((loss, aux), g), latents, ((dsm, _), g_score), z_omega = run(params, batch, jax.random.key(8))
    assert set(g) == {"target_ae", "omega_ae"} and norm(g["target_ae"]) > 0
    np.testing.assert_allclose(loss, 10 * aux["mse_target"] + 0.1 * aux["mse_condition"], 1e-6)
    assert latents["z_target"].shape == latents["z_omega"].shape == (4, 8, 8)
    np.testing.assert_allclose(latents["z_omega"], z_omega)
    assert np.isfinite(dsm) and norm(g_score) > 0
    with pytest.raises(ValueError, match="z_omega"):
        model.latent_loss(params["score"], {"z_target": latents["z_target"]}, jax.random.key(0))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(training_mode="sequential"), "latent.training_mode='sequential'.*allowed"),
        (dict(ae_channels=(4, 8, 8, 8, 8)), "latent grid m = n / 2\\^L = 16/16 = 1"),
        (dict(latent_channels=2), "latent_channels must be 1"),
        (dict(ae_channels=(4,)), "latent.ae_channels=.*at least two"),
        (dict(ae_groups=3), "latent autoencoder: GroupNorm"),
        (dict(loss_weights=(1.0, 1.0, 1.0)), "latent.loss_weights=.*4 finite non-negative"),
        (dict(stage1_weights=(1.0, -1.0, 0.0)), "latent.stage1_weights"),
        (dict(width=0), "latent.width=0"),
    ],
)
def test_config_errors_name_the_field(change, match):
    with pytest.raises(ValueError, match=match):
        latent_model.from_config(tiny_config(**change), STATS)


def test_grid_not_divisible_by_the_downsampling_is_refused():
    config = tiny_config(ae_channels=(4, 8, 8, 8))  # L = 3: 2^3 = 8
    config["data"]["coarse_size"] = 20
    with pytest.raises(ValueError, match="n=20 is not divisible by 2\\^L = 8.*data.coarse_size"):
        latent_model.from_config(config, STATS)
    config["data"]["coarse_size"] = 64
    model = latent_model.from_config(config, STATS)
    with pytest.raises(ValueError, match="n=36 is not divisible"):
        model.init(jax.random.PRNGKey(0), 36)


def test_other_config_errors():
    config = tiny_config()
    with pytest.raises(ValueError, match="model.conditions=.*ω|model.conditions=.*omega"):
        latent_model.from_config(
            {**config, "model": {**config["model"], "conditions": ("omega", "sparse")}}, STATS
        )
    with pytest.raises(ValueError, match="model.kind='score'"):
        latent_model.from_config({**config, "model": {**config["model"], "kind": "score"}}, STATS)
    with pytest.raises(ValueError, match="no 'latent' section"):
        latent_model.from_config({k: v for k, v in config.items() if k != "latent"}, STATS)
    with pytest.raises(ValueError, match="statistics missing for \\['omega'\\]"):
        latent_model.from_config(config, {"target": STATS["target"]})
    with pytest.raises(ValueError, match="normalize_target"):
        latent_model.from_config(
            {**config, "diffusion": {**config["diffusion"], "normalize_target": True}}, STATS
        )


def test_bad_conditions_and_batches_are_refused(model_and_params):
    model, params = model_and_params
    f = fields(2)  # every check fails before any network runs
    with pytest.raises(ValueError, match="missing condition.*omega"):
        model.sample(params, jax.random.PRNGKey(0), {"vorticity": f["omega"]}, SAMPLER)
    with pytest.raises(ValueError, match="\\[batch, n, n\\]"):
        model.sample(params, jax.random.PRNGKey(0), {"omega": f["omega"][0]}, SAMPLER)
    with pytest.raises(ValueError, match="must be paired"):
        model.loss(params, {"omega": f["omega"], "target": f["target"][:1]}, jax.random.key(0))
    with pytest.raises(ValueError, match="no field.*target"):
        model.loss(params, {"omega": f["omega"]}, jax.random.key(0))
    with pytest.raises(ValueError, match="field name 'H' is invalid"):
        model.encode(params, "H", f["target"])


def test_paper_b_configs_describe_paper_b():
    """The paper configs' latent model: 64² → 16×16, two ≈ 9 M-parameter autoencoders, latent
    FNO modes 4 width 20 (≈ 0.28 M real parameters), VE σ = 30, 10-step EM to t_max = 0.4."""
    from closurejax.models import fno
    from experiments.configs import paper_b_lcdm_two_stage

    for module, mode in ((paper_b_lcdm_joint, "joint"), (paper_b_lcdm_two_stage, "two_stage")):
        config = module.get_config().to_dict()
        assert config["latent"]["training_mode"] == mode
        assert config["training"]["batch_size"] == 200 and config["training"]["num_epochs"] == 500
        model = latent_model.from_config(config, STATS)
        assert model.latent_size(config["data"]["coarse_size"]) == 16
        shapes = jax.eval_shape(lambda k, m=model: m.init(k, 64), jax.random.PRNGKey(0))
        assert 8.9e6 < fno.count_params(shapes["target_ae"]) < 9.1e6
        assert 0.2e6 < fno.count_params(shapes["score"]) < 0.35e6
        sampler = conditional.sampler_from_config(config["sampler"])
        assert (sampler.name, sampler.num_steps, sampler.t_max) == ("euler_maruyama", 10, 0.4)
    # the model section stays paper B's P-CDM (the comparison run, `--config.model.kind=score`)
    pcdm = paper_b_lcdm_joint.get_config().to_dict()
    assert (pcdm["model"]["modes"], pcdm["model"]["width"], pcdm["model"]["embed_dim"]) == (
        6,
        40,
        512,
    )


@pytest.mark.slow  # ≈ 12 s on 2 cores
def test_autoencoders_on_batch_slices_equal_one_call(model_and_params):
    model, params = model_and_params
    whole = dataclasses.replace(model, batch_chunk=None)
    sliced = dataclasses.replace(model, batch_chunk=2)  # 5 samples: 2 slices of 2, then 1
    assert whole.chunk_size(N) is None and sliced.chunk_size(N) == 2
    batch = fields(5, seed=4)

    @jax.jit
    def run(p):
        out = {}
        for name, m in (("whole", whole), ("sliced", sliced)):
            out[name] = (
                m.reconstruct(p, "target", batch["target"]),
                m.sample(p, jax.random.PRNGKey(3), batch, SAMPLER),
                m.loss(p, batch, jax.random.PRNGKey(5))[0],
            )
        return out

    out = run(params)
    for a, b in zip(out["sliced"], out["whole"], strict=True):
        scale = float(jnp.abs(b).max())
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=2e-5 * scale)
    assert out["whole"][1].shape == (5, N, N)
    with pytest.raises(ValueError, match="model.batch_chunk=-1 is invalid"):
        dataclasses.replace(model, batch_chunk=-1)


def test_condition_with_nan_is_refused(model_and_params):
    model, params = model_and_params
    omega = fields(2)["omega"].at[1, 3, 4].set(jnp.nan)
    with pytest.raises(ValueError, match="condition 'omega' contains non-finite"):
        model.sample(params, jax.random.PRNGKey(0), {"omega": omega}, SAMPLER)


# --------------------------------------------------------------------------------------------------
# Issue 11: cost-designed autoencoders from the config, latent collapse options, latent_std
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(ae_stem="pixel"), r"latent.ae_stem='pixel' is invalid; allowed: \('conv', "),
        (dict(ae_stem_factor=2), "latent.ae_stem_factor=2 is invalid for latent.ae_stem='conv'"),
        (
            dict(ae_stem="strided", ae_stem_factor=1),
            "latent.ae_stem_factor=1 is invalid for latent.ae_stem='strided'; allowed: an int",
        ),
        (dict(ae_num_res_blocks=-1), "latent.ae_num_res_blocks=-1 is invalid: .*integer >= 0"),
        (dict(dsm_target_grad="no"), "latent.dsm_target_grad='no' is invalid; allowed: True"),
        (dict(kl_reduction="max"), r"latent.kl_reduction='max' is invalid; allowed: \('mean'"),
        (
            dict(ae_stem="space_to_depth", ae_stem_factor=2, ae_channels=()),
            "latent.ae_channels=\\(\\) is invalid: expected at least one",
        ),
    ],
)
def test_issue_11_config_errors_name_field_value_and_allowed(change, match):
    with pytest.raises(ValueError, match=match) as error:
        latent_model.from_config(tiny_config(**change), STATS)
    assert "\n" not in str(error.value)  # one line


def test_stems_and_latent_sizes_from_the_config():
    """16² fields: a stem of factor 2 with one level, or factor 4 with none, gives 4x4 latents;
    `ae_num_res_blocks = 0` is accepted; paper B's 2-level layout keeps its old error."""
    for change in (
        dict(ae_stem="space_to_depth", ae_stem_factor=2, ae_channels=(4, 8), modes=2),
        dict(ae_stem="strided", ae_stem_factor=4, ae_channels=(8,), modes=2),
        dict(ae_num_res_blocks=0, ae_channels=(4, 8, 8), modes=2),
    ):
        model = latent_model.from_config(tiny_config(**change), STATS)
        assert model.factor == 4 and model.latent_size(N) == 4, change
        shapes = jax.eval_shape(lambda k, m=model: m.init(k, N), jax.random.PRNGKey(0))
        z = jax.eval_shape(
            lambda p, x, m=model: m.encode(p, "target", x), shapes, jnp.zeros((2, N, N))
        )
        assert z.shape == (2, 4, 4)
    config = tiny_config(ae_stem="space_to_depth", ae_stem_factor=4, ae_channels=(4, 8))
    with pytest.raises(ValueError, match="n=20 .*latent.ae_stem_factor=4 \\* 2\\^L = 8"):
        latent_model.from_config({**config, "data": {**config["data"], "coarse_size": 20}}, STATS)


def test_presets_and_their_study_configs_cost_five_times_less():
    """`AE_PRESETS`: "paper_b" is the base config's autoencoder; "fast16" (16² latent) and "fast8"
    (8² latent) cost ≥ 5x fewer counted FLOPs (encode ω + decode H) than paper B's at 64²; the
    study configs apply them with the KL reduced like the DSM term."""
    from closurejax.config import base_config
    from closurejax.models import flops, fno
    from experiments.configs import paper_b_lcdm_fast8, paper_b_lcdm_fast16

    section = base_config().latent
    assert all(section[k] == v for k, v in latent_model.AE_PRESETS["paper_b"].items())
    cost = {}
    for module, name, m in (
        (paper_b_lcdm_joint, "paper_b", 16),
        (paper_b_lcdm_fast16, "fast16", 16),
        (paper_b_lcdm_fast8, "fast8", 8),
    ):
        config = module.get_config().to_dict()
        model = latent_model.from_config(config, STATS)
        assert model.latent_size(64) == m
        assert config["latent"]["kl_reduction"] == ("mean" if name == "paper_b" else "sum")
        per_sample = {
            part: flops.autoencoder_flops(model.target_ae, 64, 1)[part]
            for part in ("encode", "decode")
        }
        cost[name] = per_sample["encode"] + per_sample["decode"]
        shapes = jax.eval_shape(lambda k, mod=model: mod.init(k, 64), jax.random.PRNGKey(0))
        assert fno.count_params(shapes["target_ae"]) < 9.1e6
    assert cost["paper_b"] == 9_608_364_032
    assert cost["paper_b"] / cost["fast16"] > 5 and cost["paper_b"] / cost["fast8"] > 20


@pytest.mark.slow  # ≈ 8 s on 2 cores
def test_collapse_options_change_only_their_term(model_and_params):
    """`dsm_target_grad=False`: the DSM term's gradient reaches the score and the ω encoder but
    not the target encoder; `kl_reduction="sum"`: the KL term is the mean times the 8x8 latent
    entries; every other term and the `latent_std` metric are unchanged."""
    model, params = model_and_params
    batch = fields(4, seed=5)
    variant = dataclasses.replace(model, dsm_target_grad=False, kl_reduction="sum")

    @jax.jit
    def run(params, key):
        out = {}
        for name, m in (("paper", model), ("variant", variant)):

            def dsm(p, m=m):
                aux = m.loss(p, batch, key)[1]
                return aux["dsm"], aux

            out[name] = jax.grad(dsm, has_aux=True)(params)
        return out

    out = run(params, jax.random.key(6))
    (g_paper, aux_paper), (g_variant, aux_variant) = out["paper"], out["variant"]
    assert norm(g_paper["target_ae"]["params"]["encoder"]) > 0
    assert norm(g_variant["target_ae"]["params"]["encoder"]) == 0
    assert norm(g_variant["omega_ae"]["params"]["encoder"]) > 0 and norm(g_variant["score"]) > 0
    np.testing.assert_allclose(aux_variant["kl"], 64 * aux_paper["kl"], rtol=1e-5)
    for term in ("mse_target", "mse_condition", "dsm", "latent_std"):
        np.testing.assert_allclose(aux_variant[term], aux_paper[term], rtol=1e-6)
    z = model.encode(params, "target", batch["target"])
    expected = np.sqrt(np.mean(np.var(np.asarray(z).reshape(4, -1), axis=0)))
    np.testing.assert_allclose(aux_paper["latent_std"], expected, rtol=1e-4)


@pytest.mark.slow  # ≈ 60 s on 2 cores; `make test-slow` (and CI) runs it
def test_joint_latents_collapse_at_paper_b_settings_but_not_with_the_fix(tmp_path):
    """The tiny latent study of tests/training/test_run_latent.py (16² → 8×8 latents, 10 training
    snapshots), trained jointly for 400 Adam steps (batch 8, lr 1e-3) from the same init: with
    paper B's settings the spread of z_H (`latent_std`, the training metric) falls far below the
    sampler's noise levels (σ(t) from 0.032 to 1.44); with the KL summed over latent entries
    (`latent.kl_reduction = "sum"`), alone or with `dsm_target_grad = False`, it stays O(1)."""
    import optax

    from closurejax.data import generate, pipeline, store
    from tests.training.test_run_latent import tiny_latent_study

    config = tiny_latent_study()
    generate.generate(config, tmp_path, show_progress=False, log=lambda _: None)
    data = store.open_dataset(tmp_path / "dataset")
    train = pipeline.trajectory_fields(data, "train", latent_model.FIELDS)
    train = {k: jnp.asarray(np.asarray(v).reshape(-1, *v.shape[2:])) for k, v in train.items()}
    stats = {k: {"mean": float(v.mean()), "std": float(v.std())} for k, v in train.items()}
    steps, batch, optimizer = 400, 8, optax.adam(1e-3)
    settings = {
        "paper_b": dict(),
        "kl_sum": dict(kl_reduction="sum"),
        "kl_sum_no_dsm_grad": dict(kl_reduction="sum", dsm_target_grad=False),
    }
    models = {
        name: latent_model.from_config({**config, "latent": {**config["latent"], **change}}, stats)
        for name, change in settings.items()
    }
    params = models["paper_b"].init(jax.random.PRNGKey(0), N)

    @jax.jit
    def train_all(params, key):
        out = {}
        for name, model in models.items():

            def step(carry, k, model=model):
                p, opt_state = carry
                k_batch, k_loss = jax.random.split(k)
                idx = jax.random.choice(k_batch, len(train["target"]), (batch,), replace=False)
                b = {n: v[idx] for n, v in train.items()}
                (_, aux), grads = jax.value_and_grad(model.loss, has_aux=True)(p, b, k_loss)
                updates, opt_state = optimizer.update(grads, opt_state)
                return (optax.apply_updates(p, updates), opt_state), aux["latent_std"]

            init = (params, optimizer.init(params))
            out[name] = jax.lax.scan(step, init, jax.random.split(key, steps))[1]
        return out

    spreads = {k: float(np.mean(v[-20:])) for k, v in train_all(params, jax.random.key(1)).items()}
    assert spreads["paper_b"] < 0.15, spreads  # collapsed: ≪ 1 and below most of σ(t)
    assert spreads["kl_sum"] > 0.4 and spreads["kl_sum_no_dsm_grad"] > 0.5, spreads
    assert spreads["kl_sum"] > 4 * spreads["paper_b"], spreads


@pytest.mark.slow  # ≈ 30 s on 2 cores: compiles a 64² joint step and a sample per preset
@pytest.mark.parametrize("study_name", ["paper_b_lcdm_fast16", "paper_b_lcdm_fast8"])
def test_cheap_preset_configs_train_one_step_and_sample(study_name):
    """The cost-designed study configs at 64², batch 2: one Adam step of the joint loss moves
    every network and reports a finite `latent_std`; one 10-step Euler–Maruyama sample."""
    import importlib

    import optax

    config = importlib.import_module(f"experiments.configs.{study_name}").get_config().to_dict()
    model = latent_model.from_config(config, STATS)
    params = jax.jit(model.init, static_argnums=1)(jax.random.PRNGKey(0), 64)
    key = jax.random.PRNGKey(1)
    batch = {
        name: STATS[name]["std"] * jax.random.normal(jax.random.fold_in(key, i), (2, 64, 64))
        for i, name in enumerate(("omega", "target"))
    }
    tx = optax.adam(1e-3)

    @jax.jit
    def step(p):
        (loss, aux), grads = jax.value_and_grad(model.loss, has_aux=True)(p, batch, key)
        return optax.apply_updates(p, tx.update(grads, tx.init(p))[0]), loss, aux

    new, loss, aux = step(params)
    assert np.isfinite(loss) and np.isfinite(aux["latent_std"]) and aux["latent_std"] > 0
    for name in ("target_ae", "omega_ae", "score"):
        assert norm(jax.tree.map(jnp.subtract, new[name], params[name])) > 0, name
    sampler = conditional.sampler_from_config(config["sampler"])
    out = jax.jit(lambda p, k: model.sample(p, k, {"omega": batch["omega"]}, sampler))(params, key)
    assert out.shape == (2, 64, 64) and np.all(np.isfinite(np.asarray(out)))
