"""The offline (a-priori) test of a study: the papers' offline table, as one library call.

`run_offline(config, workdir)` scores the trained closure models of the study in `workdir` on its
test split (`closurejax.evaluation.offline`), at the training resolution and zero-shot at the
higher resolutions of `<workdir>/zero_shot`, and writes `metrics.json` and figures:

* physical-space studies (`model.kind` "score"): `<workdir>/score` (the diffusion model) and, if
  trained, `<workdir>/regression` (the deterministic baseline, same backbone) → `<workdir>/offline`;
* latent studies (`model.kind` "latent", paper B's L-CDM): the latent run (`<workdir>/latent` or
  `latent_two_stage`) — reconstruction errors of both autoencoders, the closure-sample scores and
  the cost per sample — and, when `<workdir>/score` holds a P-CDM of the config's `model`
  section, the same scores for it on the same test snapshots with the same keys →
  `<workdir>/offline_<run>`.

`format_results` is the printed table. `experiments/evaluate_offline.py` is the launcher; with
`show_progress` a progress bar counts the evaluations (model × resolution) and names the current
one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import ml_collections
from tqdm.auto import tqdm

from closurejax import atomic
from closurejax.data import store
from closurejax.diffusion import conditional, latent_model
from closurejax.evaluation import offline, plots
from closurejax.training import run
from closurejax.training.checkpoint import IncompatibleCheckpointError

__all__ = ["evaluate", "evaluate_latent", "format_results", "run_denoiser", "run_offline"]


def _datasets(config, workdir: Path) -> tuple[list[int], dict[str, store.Dataset]]:
    """Sizes to evaluate and their datasets (suffix -> dataset)."""
    datasets = {"": store.open_dataset(workdir / "dataset")}
    sizes = [config.data.coarse_size]
    if config.evaluation.zero_shot and (workdir / "zero_shot").exists():
        zero = store.open_dataset(workdir / "zero_shot")
        for size in config.data.zero_shot_sizes:
            datasets[f"_{size}"] = zero
            sizes.append(size)
    return sizes, datasets


def _closure_figure(config, example: dict, path: Path, size: int, label: str) -> None:
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
        path,
        title=f"{config.name}: {label} closure samples at {size}²",
        symmetric=[True, True, True, True, False, True],
    )


def run_offline(config: Any, workdir: str | Path, show_progress: bool = False) -> dict:
    """All offline scores of the study in `workdir` (module docstring); writes metrics.json and
    figures and returns the results. `config`: a ConfigDict or a plain dict."""
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config)
    return evaluate(config, Path(workdir).resolve(), show_progress)


def _progress(total: int, show: bool) -> tqdm:
    """The bar of `total` evaluations (model × resolution); `_next` names the current one."""
    return tqdm(total=total, unit="eval", desc="offline", dynamic_ncols=True, disable=not show)


def _next(bar: tqdm, label: str) -> None:
    bar.set_description(f"offline {label}")


def evaluate(config, workdir: Path, show_progress: bool = False) -> dict:
    """All offline scores of the study in `workdir`; writes metrics.json and figures."""
    if config.model.kind == latent_model.KIND:
        return evaluate_latent(config, workdir, show_progress)
    out_dir = workdir / "offline"
    evaluation = config.evaluation
    sampler = conditional.sampler_from_config(config.sampler)
    model, params = run.load(config, workdir, use_ema=evaluation.use_ema)
    sizes, datasets = _datasets(config, workdir)
    names = [*model.condition_names, "target"]
    results: dict = {"sampler": sampler.settings() | {"name": sampler.name, "nfe": sampler.nfe}}
    regression = None
    if (workdir / "regression").exists():
        reg_config = config.to_dict()
        reg_config["model"]["kind"] = "regression"
        regression = run.load(reg_config, workdir, use_ema=evaluation.use_ema)
    with _progress(len(sizes) * (1 + (regression is not None)), show_progress) as bar:
        for size, (suffix, data) in zip(sizes, datasets.items(), strict=True):
            fields = offline.test_fields(data, names, suffix, evaluation.max_snapshots)
            key = jax.random.PRNGKey(config.seed)
            _next(bar, f"score n{size}")
            summary, example = offline.evaluate_score_model(
                model, params, fields, sampler, evaluation.ensemble_size, key
            )
            summary["cost"] = offline.sample_cost(model, params, fields, sampler, key)
            results[f"score/n{size}"] = summary
            _closure_figure(config, example, out_dir / f"closure_n{size}.png", size, "diffusion")
            bar.update()
            if regression is not None:
                _next(bar, f"regression n{size}")
                results[f"regression/n{size}"] = offline.evaluate_regression_model(
                    regression[0], regression[1], fields
                )
                bar.update()
    atomic.write_json(out_dir / "metrics.json", results)
    return results


def run_denoiser(config: Any, workdir: str | Path, times: Any) -> dict:
    """The denoiser error per noise level of the diffusion model in `workdir`/score on the test
    snapshots at the training grid (`offline.evaluate_denoiser`, key `config.seed`); writes
    `workdir`/offline/denoiser.json (with the parameters' digest) and returns
    ``{"t", "sigma", "rel_error", "params_sha256"}``."""
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config)
    if config.model.kind != conditional.ClosureModel.kind:
        raise ValueError(
            f"model.kind={config.model.kind!r}: the denoiser error is measured for the "
            f"physical-space diffusion model (kind {conditional.ClosureModel.kind!r})"
        )
    workdir = Path(workdir).resolve()
    model, params = run.load(config, workdir, use_ema=config.evaluation.use_ema)
    names = [*model.condition_names, "target"]
    data = store.open_dataset(workdir / "dataset")
    fields = offline.test_fields(data, names, "", config.evaluation.max_snapshots)
    key = jax.random.PRNGKey(config.seed)
    result = offline.evaluate_denoiser(model, params, fields, times, key)
    result["params_sha256"] = run.params_digest(params)
    atomic.write_json(workdir / "offline" / "denoiser.json", result)
    return result


def _load_pcdm(config, workdir: Path, use_ema: bool) -> tuple[Any, Any] | str:
    """The P-CDM of the latent config's `model` section from DIR/score, or why it is absent."""
    if not (workdir / "score").exists():
        return f"no P-CDM run in {workdir / 'score'} (train one with --config.model.kind=score)"
    pcdm_config = config.to_dict()
    pcdm_config["model"]["kind"] = "score"
    try:
        return run.load(pcdm_config, workdir, use_ema=use_ema)
    except (IncompatibleCheckpointError, FileNotFoundError) as error:
        return (
            f"the P-CDM in {workdir / 'score'} does not fit this config's model or diffusion "
            f"section: {error}"
        )


def evaluate_latent(config, workdir: Path, show_progress: bool = False) -> dict:
    """Scores of the latent model (and of the P-CDM beside it, if trained); see the docstring."""
    evaluation = config.evaluation
    mode = latent_model.training_mode(config.to_dict())
    run_name = run.default_run_name(config)
    out_dir = workdir / f"offline_{run_name}"
    sampler = conditional.sampler_from_config(config.sampler)
    model, params = run.load(config, workdir, use_ema=evaluation.use_ema)
    pcdm = _load_pcdm(config, workdir, evaluation.use_ema)
    sizes, datasets = _datasets(config, workdir)
    results: dict = {
        "sampler": sampler.settings() | {"name": sampler.name, "nfe": sampler.nfe},
        "latent_run": run_name,
        "training_mode": mode,
    }
    if isinstance(pcdm, str):
        results["score/skipped"] = pcdm
    with _progress(len(sizes) * (1 + (not isinstance(pcdm, str))), show_progress) as bar:
        for size, (suffix, data) in zip(sizes, datasets.items(), strict=True):
            fields = offline.test_fields(
                data, ["omega", "target"], suffix, evaluation.max_snapshots
            )
            key = jax.random.PRNGKey(config.seed)
            _next(bar, f"latent n{size}")
            summary, example = offline.evaluate_score_model(
                model, params, fields, sampler, evaluation.ensemble_size, key
            )
            summary["reconstruction"] = offline.evaluate_reconstruction(model, params, fields)
            summary["cost"] = offline.sample_cost(model, params, fields, sampler, key)
            results[f"latent/n{size}"] = summary
            _closure_figure(
                config, example, out_dir / f"latent_closure_n{size}.png", size, "latent"
            )
            bar.update()
            if not isinstance(pcdm, str):
                _next(bar, f"P-CDM n{size}")
                pcdm_summary, pcdm_example = offline.evaluate_score_model(
                    pcdm[0], pcdm[1], fields, sampler, evaluation.ensemble_size, key
                )
                pcdm_summary["cost"] = offline.sample_cost(pcdm[0], pcdm[1], fields, sampler, key)
                results[f"score/n{size}"] = pcdm_summary
                _closure_figure(
                    config, pcdm_example, out_dir / f"score_closure_n{size}.png", size, "P-CDM"
                )
                bar.update()
            if suffix == "":
                truth = {n: fields[n][:1] for n in ("target", "omega")}
                recon = {
                    n: jax.jit(model.reconstruct, static_argnums=1)(params, n, truth[n])[0]
                    for n in truth
                }
                plots.field_panels(
                    {
                        "H": truth["target"][0],
                        "H reconstructed": recon["target"],
                        "H error": recon["target"] - truth["target"][0],
                        "ω": truth["omega"][0],
                        "ω reconstructed": recon["omega"],
                        "ω error": recon["omega"] - truth["omega"][0],
                    },
                    out_dir / "reconstruction.png",
                    title=f"{config.name}: autoencoder reconstructions at {size}²",
                    symmetric=[True] * 6,
                )
    atomic.write_json(out_dir / "metrics.json", results)
    return results


def format_results(results: dict) -> str:
    """The printed table: one row per model and size."""
    header = (
        f"{'model/size':<16}{'rel err (sample)':>17}{'rel err (mean)':>15}{'CRPS':>10}"
        f"{'spread/skill':>13}{'s/sample':>11}{'recon H':>9}{'recon ω':>9}"
    )
    lines = [header]
    for name, r in results.items():
        if name.startswith(("score/n", "latent/n")):
            cost = r.get("cost", {}).get("seconds_per_sample", float("nan"))
            recon = r.get("reconstruction", {})
            rh = f"{recon['target']['rel_error']:>9.4f}" if recon else f"{'':>9}"
            rw = f"{recon['omega']['rel_error']:>9.4f}" if recon else f"{'':>9}"
            lines.append(
                f"{name:<16}{r['rel_error_sample']:>17.4f}{r['rel_error_mean']:>15.4f}"
                f"{r['crps']:>10.3g}{r['spread_skill']:>13.3f}{cost:>11.2e}{rh}{rw}"
            )
        elif name.startswith("regression/"):
            lines.append(f"{name:<16}{r['rel_error']:>17.4f}")
        elif name == "score/skipped":
            lines.append(f"P-CDM skipped: {r}")
    return "\n".join(lines)
