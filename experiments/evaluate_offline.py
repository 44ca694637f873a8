"""Offline evaluation of trained closure models on the test split, at the training resolution
and zero-shot at the higher resolutions of DIR/zero_shot (papers.md, offline table).

    python experiments/evaluate_offline.py --config=experiments/configs/paper_a_h.py --workdir=DIR

Evaluates DIR/score (the diffusion model) and, if trained, DIR/regression (the deterministic
baseline); writes DIR/offline/metrics.json and figures (truth, samples, ensemble mean, spread,
error) and prints a table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
from absl import app, flags
from ml_collections import config_flags

from closurejax import atomic
from closurejax.data import store
from closurejax.diffusion import conditional
from closurejax.evaluation import offline, plots
from closurejax.training import run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study folder (dataset, runs).")
flags.mark_flags_as_required(["config", "workdir"])


def evaluate(config, workdir: Path) -> dict:
    """All offline scores of the study in `workdir`; writes metrics.json and figures."""
    out_dir = workdir / "offline"
    evaluation = config.evaluation
    sampler = conditional.sampler_from_config(config.sampler)
    model, params = run.load(config, workdir, use_ema=evaluation.use_ema)
    datasets = {"": store.open_dataset(workdir / "dataset")}
    sizes = [config.data.coarse_size]
    if evaluation.zero_shot and (workdir / "zero_shot").exists():
        zero = store.open_dataset(workdir / "zero_shot")
        for size in config.data.zero_shot_sizes:
            datasets[f"_{size}"] = zero
            sizes.append(size)
    names = [*model.condition_names, "target"]
    results: dict = {"sampler": sampler.settings() | {"name": sampler.name, "nfe": sampler.nfe}}
    regression = None
    if (workdir / "regression").exists():
        reg_config = config.to_dict()
        reg_config["model"]["kind"] = "regression"
        regression = run.load(reg_config, workdir, use_ema=evaluation.use_ema)
    for size, (suffix, data) in zip(sizes, datasets.items(), strict=True):
        fields = offline.test_fields(data, names, suffix, evaluation.max_snapshots)
        key = jax.random.PRNGKey(config.seed)
        summary, example = offline.evaluate_score_model(
            model, params, fields, sampler, evaluation.ensemble_size, key
        )
        results[f"score/n{size}"] = summary
        samples = example["samples"]
        plots.field_panels(
            {
                "truth": example["truth"],
                "sample 1": samples[0],
                "sample 2": samples[1],
                "ensemble mean": samples.mean(axis=0),
                "spread": samples.std(axis=0),
                "error of mean": samples.mean(axis=0) - example["truth"],
            },
            out_dir / f"closure_n{size}.png",
            title=f"{config.name}: closure samples at {size}²",
            symmetric=[True, True, True, True, False, True],
        )
        if regression is not None:
            results[f"regression/n{size}"] = offline.evaluate_regression_model(
                regression[0], regression[1], fields
            )
    atomic.write_json(out_dir / "metrics.json", results)
    return results


def main(argv: list[str]) -> None:
    del argv
    workdir = Path(_WORKDIR.value).resolve()
    try:
        results = evaluate(_CONFIG.value, workdir)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"evaluate_offline: {error}")
    print(f"{'model/size':<22}{'rel err (sample)':>18}{'rel err (mean)':>16}{'CRPS':>12}")
    for name, r in results.items():
        if name.startswith("score/"):
            print(
                f"{name:<22}{r['rel_error_sample']:>18.4f}{r['rel_error_mean']:>16.4f}"
                f"{r['crps']:>12.3g}"
            )
        elif name.startswith("regression/"):
            print(f"{name:<22}{r['rel_error']:>18.4f}{'':>16}{'':>12}")
    print(f"written: {workdir / 'offline'}")


if __name__ == "__main__":
    app.run(main)
