"""Benchmark groups of the physical-space diffusion closure (`make bench ONLY=score,samplers`).

Group "score" (paper B's P-CDM: modes 6, width 40, embed 512, ω only, 64²; paper A's model for
the training step):
* `score/forward/{method}/b{B}/seconds` — one score-network forward (`ClosureModel.forward`: the
  network on cache-sized batch slices as sampling runs it, `batch_chunk="auto"`) for each
  spectral path ("dft": truncated DFT as dense matmuls; "fft"), batch 1 and 100;
  `score/forward/{method}/b{B}/unchunked_seconds` — the same forward as one call on the whole batch;
* `score/forward/b100/flop_ratio` — best measured forward time / (its dense FLOPs ÷ the measured
  dense-matmul rate of this machine), both from this run; target ≤ 3 (issue 3);
* `score/sample/{sampler}/b100/seconds` — one closure sample (encode once + the sampler's NFE
  target-branch evaluations) at ≈ 10 NFE, batch 100;
* `score/train_step/b200/seconds` — one Adam step of paper A's model (ω + sparse) at batch 200.

Group "samplers" (needs the CPU-scale study trained: experiments/configs/cpu_small.py in
`study_workdir`): the offline relative error of the ensemble mean of every sampler against its NFE,
and `samplers/min_nfe_matching_em10` — the fewest NFE with which any sampler matches the papers'
10-step Euler–Maruyama error (within 5 %); target ≤ 4.

Group "latent" (paper B: P-CDM against L-CDM, both at paper B's architectures on 64², batch 100,
10-step Euler–Maruyama over t ∈ [1e-3, 0.4]; untrained weights — only the cost is measured):
* `latent/{pcdm,lcdm}/sample/b100/seconds` — one closure sample per condition (P-CDM: modes 6,
  width 40, embed 512, ω only; L-CDM: encode ω once with a paper-size autoencoder, 10 latent-FNO
  steps on 16² (modes 4, width 20), decode once), with XLA's FLOP count (encode + NFE × one score
  evaluation [+ decode], each counted on its loop-free program);
* `latent/lcdm/{encode,latent_sampling,decode}/b100/seconds` — the L-CDM's three parts;
* `latent/speedup/b100` — P-CDM seconds / L-CDM seconds; target ≥ 3 (paper B measured 2.8× on
  one GPU for the online run).
When a trained CPU-scale latent study is found (experiments/configs/cpu_latent.py in the folder
named by `CLOSUREJAX_BENCH_LATENT_STUDY`, default workdirs/cpu_study, with its `latent` and ω-only
`score` runs), `latent/study/{lcdm,pcdm}/rel_error_{sample,mean}` give their offline accuracy on
the same test snapshots beside the timings.

The study configs the groups measure are passed in (`configs`, by name; `CONFIGS` names those
each group needs): "score" paper_a_h and paper_b, "samplers" cpu_small (the config of the trained
study), "latent" paper_b, paper_b_lcdm_joint and cpu_latent (that of the trained latent study).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from closurejax.diffusion import conditional, samplers
from closurejax.evaluation.benchmarks import (
    BenchRecord,
    Configs,
    Group,
    record,
    study_config,
    time_fn,
)

STUDY_ENV = "CLOSUREJAX_BENCH_STUDY"
"""Environment variable naming the CPU-scale study workdir for the "samplers" group."""
LATENT_STUDY_ENV = "CLOSUREJAX_BENCH_LATENT_STUDY"
"""Environment variable naming the CPU-scale latent study workdir for the "latent" group."""


def _pcdm_config(
    configs: Configs,
    width: int,
    modes: int,
    embed: int,
    conditions: tuple[str, ...],
    method: str,
) -> dict:
    """Paper B's config (`configs["paper_b"]`) with the P-CDM network of the arguments."""
    config = study_config(configs, "paper_b")
    config["model"].update(
        width=width, modes=modes, embed_dim=embed, conditions=conditions, spectral_method=method
    )
    return config


def _model(config: dict) -> conditional.ClosureModel:
    names = [*config["model"]["conditions"], "target"]
    return conditional.from_config(config, {n: {"mean": 0.0, "std": 1.0} for n in names})


# Sampler settings giving ≈ 10 NFE each (predictor–corrector: 5 × (1 + 1); Heun: 2·5 − 1 + ...).
TEN_NFE = {
    "euler_maruyama": dict(num_steps=10),
    "predictor_corrector": dict(num_steps=5, corrector_steps=1),
    "heun_ode": dict(num_steps=6),
    "dpm_solver": dict(num_steps=10),
}


def score_benchmarks(quick: bool, configs: Configs) -> list[BenchRecord]:
    """Group "score"; see the module docstring. `quick`: tiny sizes for tests; `configs`:
    paper_b and paper_a_h."""
    from closurejax.models import flops

    n = 16 if quick else 64
    width, modes, embed = (8, 4, 16) if quick else (40, 6, 512)
    batches = (1, 4) if quick else (1, 100)
    repeats = 2 if quick else 3
    out: list[BenchRecord] = []
    key = jax.random.PRNGKey(0)
    rate = flops.matmul_rate(size=256 if quick else 2048, repeats=repeats)
    best: dict[int, tuple[float, str, int]] = {}  # batch → (seconds, method, flops)
    models: dict[str, conditional.ClosureModel] = {}
    for method in ("dft", "fft"):
        config = _pcdm_config(configs, width, modes, embed, ("omega",), method)
        model = models[method] = _model(config)
        params = model.init(key, n)
        forward = jax.jit(lambda p, x, t, c, m=model: m.forward(p, x, t, c))
        unchunked = jax.jit(lambda p, x, t, c, m=model: m.network.apply(p, x, t, c))
        for b in batches:
            x = jax.random.normal(key, (b, n, n))
            args = (params, x, jnp.full((b,), 0.05), {"omega": x})
            seconds = time_fn(forward, *args, repeats=repeats)["median"]
            flop = flops.fno_forward_flops(model.network, n, b, method)
            cfg = dict(
                n=n,
                batch=b,
                width=width,
                modes=modes,
                embed=embed,
                method=method,
                batch_chunk=model.chunk_size(n),
                flops=flop,
                matmul_flops_per_s=rate,
            )
            out.append(record(f"score/forward/{method}/b{b}/seconds", seconds, "s", config=cfg))
            if model.chunk_size(n) is not None and model.chunk_size(n) < b:
                one_call = time_fn(unchunked, *args, repeats=repeats)["median"]
                cfg = {**cfg, "batch_chunk": None}
                name = f"score/forward/{method}/b{b}/unchunked_seconds"
                out.append(record(name, one_call, "s", config=cfg))
            if b not in best or seconds < best[b][0]:
                best[b] = (seconds, method, flop)
    b = batches[-1]
    seconds, method, flop = best[b]
    model = models[method]
    out.append(
        record(
            f"score/forward/b{b}/flop_ratio",
            seconds / (flop / rate),
            "ratio",
            target=3.0,
            config=dict(
                n=n,
                batch=b,
                best_method=method,
                batch_chunk=models[method].chunk_size(n),
                flops=flop,
                matmul_flops_per_s=rate,
                seconds=seconds,
            ),
        )
    )
    # one closure sample per sampler at ≈ 10 NFE (best spectral path)
    params = model.init(key, n)
    cond = {"omega": jax.random.normal(key, (b, n, n))}
    for name, settings in TEN_NFE.items():
        base = dict(num_steps=2) if quick else settings
        sampler = samplers.SamplerConfig(name=name, t_min=1e-3, t_max=0.4, **{**settings, **base})
        sample = jax.jit(lambda p, k, c, s=sampler: model.sample(p, k, c, s))
        seconds = time_fn(sample, params, key, cond, repeats=repeats)["median"]
        out.append(
            record(
                f"score/sample/{name}/b{b}/seconds",
                seconds,
                "s",
                config=dict(n=n, batch=b, nfe=sampler.nfe, method=method, **settings),
            )
        )
    # one training step of paper A's model at batch 200
    out.append(_train_step_record(configs, n, quick, repeats))
    return out


def _train_step_record(configs: Configs, n: int, quick: bool, repeats: int) -> BenchRecord:
    config = study_config(configs, "paper_a_h")
    if quick:
        config["model"].update(width=8, modes=4, embed_dim=16)
    model = _model(config)
    b = 8 if quick else 200
    key = jax.random.PRNGKey(1)
    params = model.init(key, n)
    batch = {
        name: jax.random.normal(jax.random.fold_in(key, i), (b, n, n))
        for i, name in enumerate([*model.condition_names, "target"])
    }
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params: Any, opt_state: Any) -> tuple[Any, Any]:
        grads, _ = jax.grad(model.loss, has_aux=True)(params, batch, key)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    seconds = time_fn(step, params, tx.init(params), repeats=repeats)["median"]
    return record(
        f"score/train_step/b{b}/seconds",
        seconds,
        "s",
        config=dict(n=n, batch=b, model="paper_a_h", samples_per_s=b / seconds),
    )


def sampler_accuracy_benchmarks(
    quick: bool, configs: Configs, study_workdir: str | None = None
) -> list[BenchRecord]:
    """Group "samplers": offline error vs NFE of every sampler on the trained CPU-scale study
    (`configs["cpu_small"]`: its config; `study_workdir`: its folder, default `STUDY_ENV`)."""
    from closurejax.data import store
    from closurejax.evaluation import offline
    from closurejax.training import run

    workdir = Path(study_workdir or os.environ.get(STUDY_ENV, "workdirs/cpu_small")).resolve()
    if not (workdir / "score").exists():
        raise FileNotFoundError(
            f"the 'samplers' benchmark needs the trained CPU-scale study at {workdir} (set "
            f"{STUDY_ENV}); make it with experiments/{{generate_data,train}}.py "
            "--config=experiments/configs/cpu_small.py"
        )
    config = study_config(configs, "cpu_small")
    model, params = run.load(config, workdir)
    data = store.open_dataset(workdir / "dataset")
    snapshots, members = (8, 3) if quick else (64, 8)
    fields = offline.test_fields(data, [*model.condition_names, "target"], max_snapshots=snapshots)
    key = jax.random.PRNGKey(0)
    grids: dict[str, list[dict]] = {
        "euler_maruyama": [dict(num_steps=k) for k in (2, 3, 4, 6, 10)],
        "predictor_corrector": [dict(num_steps=k, corrector_steps=1) for k in (1, 2, 3, 5)],
        "heun_ode": [dict(num_steps=k) for k in (1, 2, 3, 6)],
        "dpm_solver": [dict(num_steps=k) for k in (2, 3, 4, 6, 10)],
    }
    if quick:
        grids = {name: grid[:2] for name, grid in grids.items()}
        grids["euler_maruyama"].append(dict(num_steps=10))
    errors: dict[tuple[str, int], float] = {}
    out: list[BenchRecord] = []
    for name, grid in grids.items():
        for settings in grid:
            sampler = conditional.sampler_from_config(config["sampler"], name=name, **settings)
            summary, _ = offline.evaluate_score_model(model, params, fields, sampler, members, key)
            errors[(name, sampler.nfe)] = summary["rel_error_mean"]
            out.append(
                record(
                    f"samplers/{name}/nfe{sampler.nfe}/rel_error_mean",
                    summary["rel_error_mean"],
                    "rel",
                    config=dict(
                        settings,
                        nfe=sampler.nfe,
                        rel_error_sample=summary["rel_error_sample"],
                        crps=summary["crps"],
                        snapshots=snapshots,
                        members=members,
                    ),
                )
            )
    reference = errors[("euler_maruyama", 10)]
    matching = [nfe for (name, nfe), err in errors.items() if err <= 1.05 * reference]
    best = min(matching) if matching else math.nan
    out.append(
        record(
            "samplers/min_nfe_matching_em10",
            float(best),
            "NFE",
            target=4.0,
            config=dict(em10_rel_error_mean=reference, tolerance=0.05),
        )
    )
    return out


def _flops(fn: Callable[..., Any], *args: Any) -> float:
    """XLA's FLOP count of `fn(*args)` (loop-free functions only: XLA counts a loop body once,
    so count models with `_unsliced`), from the lowered program; NaN where the backend gives
    none."""
    try:
        analysis = jax.jit(fn).lower(*args).cost_analysis()
    except Exception:  # noqa: BLE001 — an optional figure: some backends do not implement it
        return math.nan
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", math.nan))


def _unsliced(model: Any) -> Any:
    """`model` without batch slices (`batch_chunk=None`): the same arithmetic in one call, so
    that XLA's cost analysis sees the whole batch (a sliced network is a `lax.map` loop whose body
    XLA counts once: on a CPU the P-CDM's FLOPs came out for 4 of 100 samples, the L-CDM
    autoencoders' for 1)."""
    return dataclasses.replace(model, batch_chunk=None)


def _lcdm_config(configs: Configs, quick: bool) -> dict:
    """Paper B's L-CDM config (`configs["paper_b_lcdm_joint"]`), tiny when `quick`."""
    config = study_config(configs, "paper_b_lcdm_joint")
    if quick:
        config["data"]["coarse_size"] = 16
        config["latent"].update(
            ae_channels=(8, 16), ae_groups=4, ae_num_heads=2, width=8, modes=4, depth=2
        )
        config["latent"]["embed_dim"] = 16
    return config


def latent_benchmarks(
    quick: bool, configs: Configs, study_workdir: str | None = None
) -> list[BenchRecord]:
    """Group "latent": cost of one P-CDM and one L-CDM closure sample; see the module docstring.

    `quick`: tiny sizes for tests (16², batch 4, small networks); `configs`: paper_b,
    paper_b_lcdm_joint and, used when the trained latent study is found in `study_workdir`
    (default `LATENT_STUDY_ENV`), its config cpu_latent.
    """
    from closurejax.diffusion import latent_model
    from closurejax.models import fno

    config = _lcdm_config(configs, quick)
    n = int(config["data"]["coarse_size"])
    b = 4 if quick else 100
    repeats = 2 if quick else 3
    sampler = conditional.sampler_from_config(config["sampler"])  # paper B: EM, 10 steps, 0.4
    key = jax.random.PRNGKey(0)
    cond = {"omega": jax.random.normal(key, (b, n, n))}
    init = jax.jit(lambda k, m: m.init(k, n), static_argnums=1)
    out: list[BenchRecord] = []
    common = dict(n=n, batch=b, sampler=sampler.name, nfe=sampler.nfe, t_max=sampler.t_max)

    # P-CDM: paper B's physical-space model (ω only)
    width, modes, embed = (8, 4, 16) if quick else (40, 6, 512)
    pcdm = _model(_pcdm_config(configs, width, modes, embed, ("omega",), "auto"))
    p_params = init(key, pcdm)
    p_sample = jax.jit(lambda p, k, c: pcdm.sample(p, k, c, sampler))
    p_seconds = time_fn(p_sample, p_params, key, cond, repeats=repeats)["median"]
    p_config = dict(
        common,
        model="P-CDM",
        width=width,
        modes=modes,
        embed=embed,
        params=fno.count_params(p_params),
    )
    p_features = jax.jit(pcdm.encode)(p_params, cond)
    x = cond["omega"]
    p_flat = _unsliced(pcdm)
    p_config["flops_encode"] = _flops(p_flat.encode, p_params, cond)
    p_config["flops_per_step"] = _flops(
        lambda p, x, t, f: p_flat.score_fn(p, f)(x, t), p_params, x, jnp.full((b,), 0.1), p_features
    )
    p_config["flops"] = p_config["flops_encode"] + sampler.nfe * p_config["flops_per_step"]
    out.append(record(f"latent/pcdm/sample/b{b}/seconds", p_seconds, "s", config=p_config))

    # L-CDM: paper B's latent model (two autoencoders, latent FNO)
    lcdm = latent_model.from_config(
        config, {n_: {"mean": 0.0, "std": 1.0} for n_ in ("omega", "target")}
    )
    l_params = init(key, lcdm)
    m = lcdm.latent_size(n)

    def full(p: Any, k: jax.Array, c: dict) -> jax.Array:
        return lcdm.sample(p, k, c, sampler)

    def encode(p: Any, c: dict) -> jax.Array:
        return lcdm.condition_features(p["score"], lcdm.encode(p, "omega", c["omega"]))

    def latent_sampling(p: Any, k: jax.Array, features: jax.Array) -> jax.Array:
        z, _ = sampler.sample(k, lcdm.score_fn(p["score"], features), lcdm.sde, (b, m, m))
        return z

    def decode(p: Any, z: jax.Array) -> jax.Array:
        return lcdm.decode(p, "target", z)

    features = jax.jit(encode)(l_params, cond)
    z = jax.jit(latent_sampling)(l_params, key, features)
    parts = {
        "encode": (encode, (l_params, cond)),
        "latent_sampling": (latent_sampling, (l_params, key, features)),
        "decode": (decode, (l_params, z)),
    }
    part_seconds = {}
    for name, (fn, args) in parts.items():
        part_seconds[name] = time_fn(jax.jit(fn), *args, repeats=repeats)["median"]
    l_seconds = time_fn(jax.jit(full), l_params, key, cond, repeats=repeats)["median"]
    latent = config["latent"]
    l_flat = _unsliced(lcdm)
    step_flops = _flops(
        lambda p, z, t, f: l_flat.score_fn(p["score"], f)(z, t),
        l_params,
        z,
        jnp.full((b,), 0.1),
        features,
    )
    part_flops = {
        "encode": _flops(
            lambda p, c: l_flat.condition_features(
                p["score"], l_flat.encode(p, "omega", c["omega"])
            ),
            l_params,
            cond,
        ),
        "latent_sampling": sampler.nfe * step_flops,
        "decode": _flops(lambda p, z: l_flat.decode(p, "target", z), l_params, z),
    }
    l_config = dict(
        common,
        model="L-CDM",
        latent=[m, m],
        ae_channels=list(latent["ae_channels"]),
        ae_attention=latent["ae_attention"],
        width=latent["width"],
        modes=latent["modes"],
        embed=latent["embed_dim"],
        params_per_autoencoder=fno.count_params(l_params["target_ae"]),
        score_params=fno.count_params(l_params["score"]),
        flops=sum(part_flops.values()),
        part_flops=part_flops,
    )
    out.append(record(f"latent/lcdm/sample/b{b}/seconds", l_seconds, "s", config=l_config))
    for name, seconds in part_seconds.items():
        out.append(
            record(
                f"latent/lcdm/{name}/b{b}/seconds",
                seconds,
                "s",
                config=dict(common, flops=l_config["part_flops"][name]),
            )
        )
    out.append(
        record(
            f"latent/speedup/b{b}",
            p_seconds / l_seconds,
            "ratio",
            target=3.0,
            lower_is_better=False,
            config=dict(
                common,
                pcdm_seconds=p_seconds,
                lcdm_seconds=l_seconds,
                pcdm_flops=p_config["flops"],
                lcdm_flops=l_config["flops"],
                paper_b_gpu_speedup=2.8,
            ),
        )
    )
    out += _latent_study_records(quick, configs, study_workdir)
    return out


def _latent_study_records(
    quick: bool, configs: Configs, study_workdir: str | None
) -> list[BenchRecord]:
    """Offline accuracy of the trained CPU latent study's L-CDM and P-CDM (none if absent;
    `configs["cpu_latent"]`: its config)."""
    from closurejax.data import store
    from closurejax.evaluation import offline
    from closurejax.training import run

    workdir = Path(
        study_workdir or os.environ.get(LATENT_STUDY_ENV, "workdirs/cpu_study")
    ).resolve()
    if not ((workdir / "latent").exists() and (workdir / "score").exists()):
        return []
    config = study_config(configs, "cpu_latent")
    pcdm_config = study_config(configs, "cpu_latent")
    pcdm_config["model"]["kind"] = "score"
    models = {"lcdm": run.load(config, workdir), "pcdm": run.load(pcdm_config, workdir)}
    data = store.open_dataset(workdir / "dataset")
    snapshots, members = (4, 3) if quick else (64, 10)
    fields = offline.test_fields(data, ["omega", "target"], max_snapshots=snapshots)
    sampler = conditional.sampler_from_config(config["sampler"])
    key = jax.random.PRNGKey(config["seed"])
    out = []
    for name, (model, params) in models.items():
        summary, _ = offline.evaluate_score_model(model, params, fields, sampler, members, key)
        cost = offline.sample_cost(model, params, fields, sampler, key)
        for metric in ("rel_error_sample", "rel_error_mean"):
            out.append(
                record(
                    f"latent/study/{name}/{metric}",
                    summary[metric],
                    "rel",
                    config=dict(
                        study=str(workdir),
                        snapshots=summary["num_snapshots"],
                        members=members,
                        crps=summary["crps"],
                        spread_skill=summary["spread_skill"],
                        seconds_per_sample=cost["seconds_per_sample"],
                        cost_batch=cost["batch"],
                    ),
                )
            )
    return out


CONFIGS: dict[str, tuple[str, ...]] = {
    "score": ("paper_a_h", "paper_b"),
    "samplers": ("cpu_small",),
    "latent": ("cpu_latent", "paper_b", "paper_b_lcdm_joint"),
}
"""The study configs each group of this module needs, by name (`Configs`)."""
GROUPS: dict[str, Group] = {
    "score": score_benchmarks,
    "samplers": sampler_accuracy_benchmarks,
    "latent": latent_benchmarks,
}
"""The groups of this module by name."""
