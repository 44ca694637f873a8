"""Benchmark groups of the physical-space diffusion closure (`make bench ONLY=score,samplers`).

Group "score" (paper B's P-CDM: modes 6, width 40, embed 512, ω only, 64²; paper A's model for
the training step):
* `score/forward/{method}/b{B}/seconds` — one score-network forward (`__call__`) for each
  spectral path ("dft": truncated DFT as dense matmuls; "fft"), batch 1 and 100;
* `score/forward/b100/flop_ratio` — best measured forward time / (its dense FLOPs ÷ the measured
  dense-matmul rate of this machine), both from this run; target ≤ 3 (issue 3);
* `score/sample/{sampler}/b100/seconds` — one closure sample (encode once + the sampler's NFE
  target-branch evaluations) at ≈ 10 NFE, batch 100;
* `score/train_step/b200/seconds` — one Adam step of paper A's model (ω + sparse) at batch 200.

Group "samplers" (needs the CPU-scale study trained: experiments/configs/cpu_small.py in
`study_workdir`): the offline relative error of the ensemble mean of every sampler against its NFE,
and `samplers/min_nfe_matching_em10` — the fewest NFE with which any sampler matches the papers'
10-step Euler–Maruyama error (within 5 %); target ≤ 4.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from closurejax.diffusion import conditional, samplers
from closurejax.evaluation.benchmarks import BenchRecord, record, time_fn

STUDY_ENV = "CLOSUREJAX_BENCH_STUDY"
"""Environment variable naming the CPU-scale study workdir for the "samplers" group."""


def _pcdm_config(width: int, modes: int, embed: int, conditions: tuple[str, ...], method: str):
    from experiments.configs import paper_b

    config = paper_b.get_config().to_dict()
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


def score_benchmarks(quick: bool = False) -> list[BenchRecord]:
    """Group "score"; see the module docstring. `quick`: tiny sizes for tests."""
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
        model = models[method] = _model(_pcdm_config(width, modes, embed, ("omega",), method))
        params = model.init(key, n)
        forward = jax.jit(lambda p, x, t, c, m=model: m.network.apply(p, x, t, c))
        for b in batches:
            x = jax.random.normal(key, (b, n, n))
            seconds = time_fn(
                forward, params, x, jnp.full((b,), 0.05), {"omega": x}, repeats=repeats
            )
            seconds = seconds["median"]
            flop = flops.fno_forward_flops(model.network, n, b, method)
            cfg = dict(
                n=n,
                batch=b,
                width=width,
                modes=modes,
                embed=embed,
                method=method,
                flops=flop,
                matmul_flops_per_s=rate,
            )
            out.append(record(f"score/forward/{method}/b{b}/seconds", seconds, "s", config=cfg))
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
    out.append(_train_step_record(n, quick, repeats))
    return out


def _train_step_record(n: int, quick: bool, repeats: int) -> BenchRecord:
    from experiments.configs import paper_a_h

    config = paper_a_h.get_config().to_dict()
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
    quick: bool = False, study_workdir: str | None = None
) -> list[BenchRecord]:
    """Group "samplers": offline error vs NFE of every sampler on the trained CPU-scale study."""
    from closurejax.data import store
    from closurejax.evaluation import offline
    from closurejax.training import run
    from experiments.configs import cpu_small

    workdir = Path(study_workdir or os.environ.get(STUDY_ENV, "workdirs/cpu_small")).resolve()
    if not (workdir / "score").exists():
        raise FileNotFoundError(
            f"the 'samplers' benchmark needs the trained CPU-scale study at {workdir} (set "
            f"{STUDY_ENV}); make it with experiments/{{generate_data,train}}.py "
            "--config=experiments/configs/cpu_small.py"
        )
    config = cpu_small.get_config()
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
            sampler = conditional.sampler_from_config(config.sampler, name=name, **settings)
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


GROUPS: dict[str, Callable[[bool], list[BenchRecord]]] = {
    "score": score_benchmarks,
    "samplers": sampler_accuracy_benchmarks,
}
