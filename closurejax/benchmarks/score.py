"""Benchmark group "score": the physical-space diffusion closure's network
(`make bench ONLY=score`).

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
* `score/train_step/b200/seconds` — one Adam step of paper A's model (ω + sparse) at batch 200
  (cache-sized batch slices, each rematerialised in the backward pass);
  `score/train_step/b200/no_remat_seconds` — the same step storing every slice's activations
  for the backward pass (`remat_slices=False`, `closurejax.models.chunking`), measured
  alternately with it.

The study configs it measures are passed in (`configs`, by name; `CONFIGS`): paper_a_h and
paper_b. `pcdm_config` and `closure_model` also build the P-CDM of the "latent" group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from closurejax.benchmarks.records import BenchRecord, Configs, Group, record, study_config
from closurejax.diffusion import conditional, samplers
from closurejax.timing import time_fn

__all__ = [
    "CONFIGS",
    "GROUPS",
    "TEN_NFE",
    "closure_model",
    "pcdm_config",
    "score_benchmarks",
    "train_step_records",
]


def pcdm_config(
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


def closure_model(config: dict) -> conditional.ClosureModel:
    """The untrained closure model of `config`, every field normalised by (mean 0, std 1)."""
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
        config = pcdm_config(configs, width, modes, embed, ("omega",), method)
        model = models[method] = closure_model(config)
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
    # one training step of paper A's model at batch 200, with and without rematerialised slices
    out.extend(train_step_records(configs, n, quick, repeats))
    return out


def train_step_records(
    configs: Configs, n: int, quick: bool, repeats: int, batch: int | None = None
) -> list[BenchRecord]:
    """The `score/train_step/b{batch}/…` rows (batch 200 unless given; 8 when `quick`)."""
    config = study_config(configs, "paper_a_h")
    if quick:
        config["model"].update(width=8, modes=4, embed_dim=16)
    remat = closure_model(config)
    models = {"seconds": remat, "no_remat_seconds": dataclasses.replace(remat, remat_slices=False)}
    b = batch or (8 if quick else 200)
    key = jax.random.PRNGKey(1)
    params = remat.init(key, n)
    fields = {
        name: jax.random.normal(jax.random.fold_in(key, i), (b, n, n))
        for i, name in enumerate([*remat.condition_names, "target"])
    }
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    def train_step(model: conditional.ClosureModel) -> Callable[..., Any]:
        @jax.jit
        def step(params: Any, opt_state: Any) -> tuple[Any, Any]:
            grads, _ = jax.grad(model.loss, has_aux=True)(params, fields, key)
            updates, opt_state = tx.update(grads, opt_state)
            return optax.apply_updates(params, updates), opt_state

        return step

    steps = {name: train_step(model) for name, model in models.items()}
    for step in steps.values():  # compile both before timing either
        jax.block_until_ready(step(params, opt_state))
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):  # alternate, so that both see the same machine load
        for name, step in steps.items():
            times[name].append(time_fn(step, params, opt_state, warmup=0, repeats=1)["median"])
    out = []
    for name, model in models.items():
        seconds = float(np.median(times[name]))
        cfg = dict(
            n=n,
            batch=b,
            model="paper_a_h",
            batch_chunk=model.chunk_size(n),
            remat_slices=model.remat_slices,
            samples_per_s=b / seconds,
        )
        out.append(record(f"score/train_step/b{b}/{name}", seconds, "s", config=cfg))
    return out


CONFIGS: dict[str, tuple[str, ...]] = {"score": ("paper_a_h", "paper_b")}
"""The study configs each group of this module needs, by name (`Configs`)."""
GROUPS: dict[str, Group] = {"score": score_benchmarks}
"""The groups of this module by name."""
