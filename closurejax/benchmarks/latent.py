"""Benchmark group "latent": the cost of paper B's P-CDM against its L-CDM
(`make bench ONLY=latent`).

Group "latent" (paper B: P-CDM against L-CDM, both at paper B's architectures on 64², batch 100,
10-step Euler–Maruyama over t ∈ [1e-3, 0.4]; untrained weights — only the cost is measured):
* `latent/{pcdm,lcdm}/sample/b100/seconds` — one closure sample per condition (P-CDM: modes 6,
  width 40, embed 512, ω only; L-CDM: encode ω once with a paper-size autoencoder, 10 latent-FNO
  steps on 16² (modes 4, width 20), decode once), with XLA's FLOP count (encode + NFE × one score
  evaluation [+ decode], each counted on its loop-free program);
* `latent/lcdm/{encode,latent_sampling,decode}/b100/seconds` — the L-CDM's three parts;
* `latent/speedup/b100` — P-CDM seconds / L-CDM seconds; target ≥ 3 (paper B measured 2.8× on
  one GPU for the online run);
* `latent/paper_b/flop_ratio` — the L-CDM sample's seconds ÷ its FLOP floor (the counted FLOPs
  ÷ the dense matmul rate measured in the same run, `flops.matmul_rate`); target ≤ 1.5: how
  close paper B's autoencoders run to the machine's peak.
* `latent/efficient/speedup/b100` — the speed-up over the P-CDM of the cheapest L-CDM that meets
  the frontier's accuracy bar (`closurejax.evaluation.frontier.efficient_latent`: an
  ensemble-mean error within 10 % of paper B's P-CDM's at the same sampler and NFE, read from the
  frontier's results, `CLOSUREJAX_BENCH_FRONTIER`, default
  experiments/results/frontier_h_cpu/frontier.json), both timed here side by side at batch 100
  with that sampler; target ≥ 3. NaN, with the reason in its config, when no results are found
  or no L-CDM meets the bar.
When a trained CPU-scale latent study is found (experiments/configs/cpu_latent.py in the folder
named by `CLOSUREJAX_BENCH_LATENT_STUDY`, default workdirs/cpu_study, with its `latent` and ω-only
`score` runs), `latent/study/{lcdm,pcdm}/rel_error_{sample,mean}` give their offline accuracy on
the same test snapshots beside the timings.

The study configs it measures are passed in (`configs`, by name; `CONFIGS`): paper_b,
paper_b_lcdm_joint and cpu_latent (that of the trained latent study).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from closurejax.benchmarks.records import BenchRecord, Configs, Group, record, study_config
from closurejax.benchmarks.score import closure_model, pcdm_config
from closurejax.diffusion import conditional
from closurejax.models.flops import matmul_rate, xla_flops
from closurejax.timing import time_fn

__all__ = ["CONFIGS", "FRONTIER_ENV", "GROUPS", "LATENT_STUDY_ENV", "latent_benchmarks"]

FRONTIER_ENV = "CLOSUREJAX_BENCH_FRONTIER"
"""Environment variable naming the frontier.json of the "latent" group's efficient speed-up."""
DEFAULT_FRONTIER = "experiments/results/frontier_h_cpu/frontier.json"

LATENT_STUDY_ENV = "CLOSUREJAX_BENCH_LATENT_STUDY"
"""Environment variable naming the CPU-scale latent study workdir for the "latent" group."""


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
    quick: bool,
    configs: Configs,
    study_workdir: str | None = None,
    frontier_path: str | None = None,
) -> list[BenchRecord]:
    """Group "latent": cost of one P-CDM and one L-CDM closure sample; see the module docstring.

    `quick`: tiny sizes for tests (16², batch 4, small networks); `configs`: paper_b,
    paper_b_lcdm_joint, frontier_h_cpu (whose models `frontier_path`, default `FRONTIER_ENV`,
    ranks) and, used when the trained latent study is found in `study_workdir` (default
    `LATENT_STUDY_ENV`), its config cpu_latent.
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
    pcdm = closure_model(pcdm_config(configs, width, modes, embed, ("omega",), "auto"))
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
    p_config["flops_encode"] = xla_flops(p_flat.encode, p_params, cond)
    p_config["flops_per_step"] = xla_flops(
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
    step_flops = xla_flops(
        lambda p, z, t, f: l_flat.score_fn(p["score"], f)(z, t),
        l_params,
        z,
        jnp.full((b,), 0.1),
        features,
    )
    part_flops = {
        "encode": xla_flops(
            lambda p, c: l_flat.condition_features(
                p["score"], l_flat.encode(p, "omega", c["omega"])
            ),
            l_params,
            cond,
        ),
        "latent_sampling": sampler.nfe * step_flops,
        "decode": xla_flops(lambda p, z: l_flat.decode(p, "target", z), l_params, z),
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
    rate = matmul_rate(size=256 if quick else 2048, repeats=repeats)
    floor = l_config["flops"] / rate
    out.append(
        record(
            "latent/paper_b/flop_ratio",
            l_seconds / floor,
            "ratio",
            target=1.5,
            config=dict(
                common,
                seconds=l_seconds,
                flops=l_config["flops"],
                matmul_flops_per_s=rate,
                floor_seconds=floor,
            ),
        )
    )
    out.append(_efficient_record(quick, configs, frontier_path, repeats))
    out += _latent_study_records(quick, configs, study_workdir)
    return out


def _shrunk(config: dict) -> dict:
    """A frontier model's config at quick-test size: 16², tiny networks (timing only)."""
    config["data"]["coarse_size"] = 16
    config["model"].update(width=8, modes=4, embed_dim=16)
    config["latent"].update(ae_groups=4, ae_num_heads=2, width=8, modes=2, depth=2, embed_dim=16)
    config["latent"]["ae_channels"] = [8, 16][: len(config["latent"]["ae_channels"])]
    return config


def _efficient_record(
    quick: bool, configs: Configs, frontier_path: str | None, repeats: int
) -> BenchRecord:
    """`latent/efficient/speedup/b{B}` (module docstring)."""
    from closurejax.evaluation import frontier
    from closurejax.training import run

    b = 4 if quick else 100
    name = f"latent/efficient/speedup/b{b}"
    path = Path(frontier_path or os.environ.get(FRONTIER_ENV, DEFAULT_FRONTIER)).resolve()
    config = study_config(configs, "frontier_h_cpu")
    section = config["frontier"]

    def missing(reason: str) -> BenchRecord:
        return record(
            name, float("nan"), "ratio", target=3.0, lower_is_better=False,
            config={"frontier": str(path), "reason": reason},
        )  # fmt: skip

    if not path.exists():
        return missing(f"no frontier results at {path} (make reproduce STUDY=frontier_h_cpu)")
    results = json.loads(path.read_text())
    choice = frontier.efficient_latent(results, section["reference"], float(section["tolerance"]))
    if isinstance(choice, str):
        return missing(choice)
    stats = {n: {"mean": 0.0, "std": 1.0} for n in ("omega", "target")}
    sampler_section = config["sampler"]
    seconds = {}
    key = jax.random.PRNGKey(0)
    for role, model_name in (("pcdm", choice["reference"]), ("lcdm", choice["model"])):
        model_cfg = frontier.model_config(config, model_name)
        if quick:
            model_cfg = _shrunk(model_cfg)
        n = int(model_cfg["data"]["coarse_size"])
        model = run.model_from_config(model_cfg, stats)
        params = jax.jit(lambda k, m=model, n=n: m.init(k, n))(key)
        sampler = conditional.sampler_from_config(
            sampler_section, name=choice["sampler"], num_steps=int(choice["num_steps"])
        )
        cond = {"omega": jax.random.normal(key, (b, n, n))}
        fn = jax.jit(lambda p, k, c, m=model, s=sampler: m.sample(p, k, c, s))
        seconds[role] = time_fn(fn, params, key, cond, repeats=repeats)["median"]
    return record(
        name,
        seconds["pcdm"] / seconds["lcdm"],
        "ratio",
        target=3.0,
        lower_is_better=False,
        config={
            "frontier": str(path),
            **{k: v for k, v in choice.items() if k != "speedup"},
            "frontier_speedup": choice["speedup"],
            "pcdm_seconds": seconds["pcdm"],
            "lcdm_seconds": seconds["lcdm"],
            "batch": b,
        },
    )


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
    config_pcdm = study_config(configs, "cpu_latent")
    config_pcdm["model"]["kind"] = "score"
    models = {"lcdm": run.load(config, workdir), "pcdm": run.load(config_pcdm, workdir)}
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
    "latent": ("cpu_latent", "frontier_h_cpu", "paper_b", "paper_b_lcdm_joint")
}
"""The study configs each group of this module needs, by name (`Configs`)."""
GROUPS: dict[str, Group] = {"latent": latent_benchmarks}
"""The groups of this module by name."""
