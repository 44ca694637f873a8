"""Benchmark group "samplers": offline accuracy of every sampler against its NFE
(`make bench ONLY=samplers`).

Group "samplers" (needs the CPU-scale study trained: experiments/configs/cpu_small.py in
`study_workdir`, default `$CLOSUREJAX_BENCH_STUDY` or workdirs/cpu_small): the offline relative
error of the ensemble mean of every sampler against its NFE, and
`samplers/min_nfe_matching_em10` — the fewest NFE with which any sampler matches the papers'
10-step Euler–Maruyama error (within 5 %); target ≤ 4.

The study config it measures is passed in (`configs`, by name; `CONFIGS`): cpu_small, the config
of the trained study.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax

from closurejax.benchmarks.records import BenchRecord, Configs, Group, record, study_config
from closurejax.diffusion import conditional

__all__ = ["CONFIGS", "GROUPS", "STUDY_ENV", "sampler_accuracy_benchmarks"]

STUDY_ENV = "CLOSUREJAX_BENCH_STUDY"
"""Environment variable naming the CPU-scale study workdir for the "samplers" group."""


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


CONFIGS: dict[str, tuple[str, ...]] = {"samplers": ("cpu_small",)}
"""The study configs each group of this module needs, by name (`Configs`)."""
GROUPS: dict[str, Group] = {"samplers": sampler_accuracy_benchmarks}
"""The groups of this module by name."""
