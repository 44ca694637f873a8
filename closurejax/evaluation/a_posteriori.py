"""The online test of a study, end to end (`experiments/simulate.py`, the demo, the Colab).

`run_online(config, workdir)`: the reference DNS of one test trajectory (cached), then one coupled
ensemble per closure source of `config.simulation.sources`, the a-posteriori metrics over time
(`closurejax.evaluation.online`), a JSON file and figures, all under `<workdir>/simulation`:

* `reference.npz` — the reference on the coarse grid (reused while the config is unchanged);
* `<source>.npz` — snapshot times `[S]`, the ensemble mean `[S, n, n]` and the first
  `keep_members` members `[m, S, n, n]`, first non-finite step per member; a finished source is
  not rerun (delete the file to force it); `<source>.partial.npz` while it runs, so a killed run
  resumes from its last chunk;
* `results.json` — the metrics of every source over time and at `figure_times`, run times;
* `figures/` — `fields.png` (reference and each source at `figure_times`), `error.png`,
  `enstrophy.png`, `spread_skill.png` (ensembles), `spectra.png` (at t_end) and `rollout.gif`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from closurejax import atomic, parallel
from closurejax.data import generate
from closurejax.evaluation import online as online_metrics
from closurejax.evaluation import plots
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled, sources
from closurejax.simulation.online import OnlineSpec, Reference, coupled_run, reference_run
from closurejax.training import checkpoint

__all__ = ["check_config", "format_table", "run_online"]


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _context_names(source: Any) -> tuple[str, ...]:
    if isinstance(source, coupled.ReferenceClosure):
        return (source.name,)
    model = getattr(source, "model", None)
    names = getattr(model, "condition_names", ())
    return tuple(n for n in names if n != "omega")


def _checkpoint_step(config: Mapping[str, Any], workdir: Path, name: str) -> int | None:
    """The latest checkpoint step of the run a source loads (None for parameter-free sources)."""
    kind = sources.MODEL_KINDS.get(name)
    if kind is None:
        return None
    directory = sources.checkpoint_dir(config, workdir, kind)
    manager = checkpoint.CheckpointManager(directory, async_save=False)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def check_config(config: Mapping[str, Any]) -> OnlineSpec:
    """Validates the study and `simulation` sections together (time grid, sources, test split)
    without computing anything, so a launcher can refuse a bad config before writing files."""
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    study = generate.Study.from_config(config)
    spec = OnlineSpec.from_config(config)
    spec.schedule(study.params.dt, study.spec.num_test)
    return spec


def run_online(
    config: Mapping[str, Any],
    workdir: str | Path,
    source_names: Sequence[str] | None = None,
    show_progress: bool = True,
    keep_members: int = 4,
    figures: bool = True,
) -> dict[str, Any]:
    """The online test of `config` in `<workdir>/simulation` (module docstring); returns the
    results dict also written to `results.json`."""
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    workdir = Path(workdir).resolve()
    out = workdir / "simulation"
    study = generate.Study.from_config(config)
    spec = OnlineSpec.from_config(config)
    dt = study.params.dt
    start, num_steps, save_every = spec.schedule(dt, study.spec.num_test)
    times = spec.snapshot_times(dt, study.spec.num_test)
    names = tuple(source_names or spec.sources)
    unknown = [
        n
        for n in names
        if n not in sources.MODEL_KINDS and n not in ("none", "reference", "smagorinsky")
    ]
    if unknown:
        raise ValueError(f"unknown closure source(s) {unknown}")
    coarse = ns.make_solver(
        study.params, study.spec.coarse_size, study.spec.stepper, study.spec.closure
    )
    # Build every source first: a missing or incompatible checkpoint fails before any compute.
    built = {name: sources.source_from_config(name, config, workdir, coarse) for name in names}
    context = sorted({c for s in built.values() for c in _context_names(s)})

    base_fp = {
        "data": generate.dataset_config(config),
        "simulation": {k: v for k, v in config["simulation"].items() if k not in ("sources",)},
    }
    ref_fp = _fingerprint({**base_fp, "fields": context})
    ref_path = out / "reference.npz"
    reference = Reference.load(ref_path, ref_fp)
    if reference is None:
        bar = tqdm(
            total=start + num_steps, desc="reference DNS", unit="step", disable=not show_progress
        )
        t0 = time.perf_counter()
        reference = reference_run(study, spec, ("omega", *context), progress=bar.update)
        bar.close()
        reference.save(ref_path, ref_fp)
        ref_seconds = time.perf_counter() - t0
    else:
        ref_seconds = 0.0
    truth = reference.snapshots(save_every)

    devices = jax.device_count()
    mesh = parallel.data_mesh() if devices > 1 and spec.ensemble_size % devices == 0 else None
    results: dict[str, Any] = {
        "config": config,
        "times": times.tolist(),
        "reference_seconds": ref_seconds,
        "sources": {},
    }
    ensembles: dict[str, np.ndarray] = {}
    for name, source in built.items():
        fp = _fingerprint(
            {**base_fp, "source": name, "checkpoint": _checkpoint_step(config, workdir, name)}
        )
        final_path = out / f"{name}.npz"
        loaded = _load_final(final_path, fp)
        if loaded is None:
            step = coupled.make_coupled_step(coarse, source, spec.every, spec.reuse_noise)
            bar = tqdm(
                total=num_steps, desc=f"online {name}", unit="step", disable=not show_progress
            )
            run = coupled_run(
                step,
                reference,
                spec,
                num_steps,
                save_every,
                _context_names(source),
                mesh,
                partial_path=out / f"{name}.partial.npz",
                fingerprint=fp,
                progress=bar.update,
            )
            bar.close()
            metrics = online_metrics.over_time(run.snapshots, truth, study.params.length)
            loaded = {
                "mean": run.snapshots.mean(axis=0),
                "members": run.snapshots[:keep_members],
                "first_nonfinite_step": run.first_nonfinite_step,
                "seconds": run.seconds,
                "metrics": metrics,
                "spectra": online_metrics.spectra_at(
                    run.snapshots, truth, [len(times) - 1], study.params.length
                ),
            }
            atomic.save_tagged_npz(
                final_path,
                {
                    "fingerprint": fp,
                    "seconds": run.seconds,
                    "metrics": metrics,
                    "spectra": loaded["spectra"],
                },
                mean=loaded["mean"],
                members=loaded["members"],
                first_nonfinite_step=loaded["first_nonfinite_step"],
            )
            (out / f"{name}.partial.npz").unlink(missing_ok=True)
        ensembles[name] = loaded["members"]
        bad = np.asarray(loaded["first_nonfinite_step"])
        results["sources"][name] = {
            "seconds": float(loaded["seconds"]),
            "steps_per_second": num_steps / max(float(loaded["seconds"]), 1e-12),
            "first_nonfinite_step": bad.tolist(),
            "blown_up_members": int(np.sum(bad >= 0)),
            "metrics": loaded["metrics"],
            "at_figure_times": online_metrics.summary_at(
                loaded["metrics"], times, spec.figure_times
            ),
            "spectra_at_t_end": loaded["spectra"],
        }
    atomic.write_json(out / "results.json", results)
    if figures:
        _figures(out / "figures", spec, times, truth, ensembles, results, list(built))
    return results


def _load_final(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """A finished source's saved result (see `run_online`) if made with `fingerprint`."""
    loaded = atomic.load_tagged_npz(path, fingerprint)
    if loaded is None:
        return None
    meta, arrays = loaded
    try:
        return {
            **{k: arrays[k] for k in ("mean", "members", "first_nonfinite_step")},
            **{k: meta[k] for k in ("seconds", "metrics", "spectra")},
        }
    except KeyError:
        return None


def _figures(
    folder: Path,
    spec: OnlineSpec,
    times: np.ndarray,
    truth: np.ndarray,
    ensembles: Mapping[str, np.ndarray],
    results: Mapping[str, Any],
    names: Sequence[str],
) -> None:
    idx = [int(np.argmin(np.abs(times - t))) for t in spec.figure_times]
    rows = {"reference": [truth[i] for i in idx]}
    for name in names:
        rows[f"{name} (member 0)"] = [ensembles[name][0, i] for i in idx]
    plots.field_grid(
        rows, [f"t = {times[i]:g}" for i in idx], folder / "fields.png", title="vorticity"
    )
    src = results["sources"]
    plots.curves(
        {
            **{
                f"{n} ens. mean": (times, src[n]["metrics"]["ensemble_mean_relative_error"])
                for n in names
            },
            **{
                f"{n} members (mean)": (times, src[n]["metrics"]["relative_error_mean_member"])
                for n in names
            },
        },
        folder / "error.png",
        ylabel="relative error of ω",
        title="online error vs reference",
    )
    first = src[names[0]]["metrics"]
    plots.curves(
        {
            "reference": (times, first["reference_enstrophy"]),
            **{n: (times, src[n]["metrics"]["enstrophy"]) for n in names},
        },
        folder / "enstrophy.png",
        ylabel="enstrophy",
        title="enstrophy",
    )
    ratio = {
        n: (times, src[n]["metrics"]["spread_skill"])
        for n in names
        if "spread_skill" in src[n]["metrics"]
    }
    if ratio:
        plots.curves(
            ratio,
            folder / "spread_skill.png",
            ylabel="spread / skill",
            title="spread–skill ratio (1 = calibrated)",
        )
    curves = {"reference": np.asarray(src[names[0]]["spectra_at_t_end"]["reference"][0])}
    for n in names:
        curves[n] = np.asarray(src[n]["spectra_at_t_end"]["ensemble"][0])
    plots.spectra(curves, folder / "spectra.png", title=f"energy spectrum, t = {times[-1]:g}")
    if spec.animation:
        frames = {"reference": truth, **{n: ensembles[n][0] for n in names}}
        plots.animation(frames, times, folder / "rollout.gif")


def format_table(results: Mapping[str, Any]) -> str:
    """Relative error of the ensemble mean (and the mean member error) at the figure times."""
    spec_times = results["config"]["simulation"]["figure_times"]
    head = f"{'source':<14}" + "".join(f"{f't={t:g}':>16}" for t in spec_times) + f"{'s/run':>9}"
    lines = [
        "online relative vorticity error: ensemble mean (mean over members)",
        head,
    ]
    for name, entry in results["sources"].items():
        mean = entry["at_figure_times"]["ensemble_mean_relative_error"]
        member = entry["at_figure_times"]["relative_error_mean_member"]
        cells = "".join(f"{mean[f't={t:g}']:>8.3f} ({member[f't={t:g}']:.3f})" for t in spec_times)
        warn = (
            f"  [{entry['blown_up_members']} members blew up]" if entry["blown_up_members"] else ""
        )
        lines.append(f"{name:<14}{cells}{entry['seconds']:>9.1f}{warn}")
    return "\n".join(lines)
