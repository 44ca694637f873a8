"""The online test of a study, end to end (`experiments/simulate.py`, the demo, the Colab).

`run_online(config, workdir)`: the reference DNS of one test trajectory (cached), then one coupled
ensemble per closure source of `config.simulation.sources`, the a-posteriori metrics over time
(`closurejax.evaluation.online_metrics`), a JSON file and figures, all under `<workdir>/simulation`:

* `reference_dns.npz` — the reference on the coarse grid (not `reference.npz`: that name is the
  result of the source "reference", the DNS's exact closure);
* `<source>.npz` — snapshot times `[S]`, the ensemble mean `[S, n, n]` and the first
  `keep_members` members `[m, S, n, n]`, first non-finite step per member; a finished source is
  not rerun (delete the file to force it); `<source>.partial.npz` while it runs, so a killed run
  resumes from its last chunk;
* `results.json` — the metrics of every source over time and at `figure_times`, run times;
* `figures/` — `fields.png` (reference and each source at `figure_times`), `error.png`,
  `enstrophy.png`, `spread_skill.png` (ensembles), `spectra.png` (at t_end) and `rollout.gif`.

Cache keys: every cached file stores the key it was made with (and its SHA-256, the fingerprint)
and is reused only under the same key; a stale one is recomputed, with one line saying which
field changed. The reference is keyed by what determines it: the dataset's sections (seed,
physics, initial condition, data), the simulation's trajectory, t_start, t_end and k, and the
fields kept. A source's result and its partial run are keyed by the dataset's sections, the
simulation section (but its source list, figure times and animation), `keep_members` and
`sources.source_key`: for a trained model the model, diffusion and sampler (and latent) sections
it runs with and the SHA-256 of its parameters' content, not the checkpoint's step — so retrained
weights (another width, learning rate, seed), another sampler or SDE never reuse an old result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from closurejax import atomic, interrupts, keys, parallel
from closurejax.config_section import as_dict
from closurejax.data import generate
from closurejax.evaluation import online_metrics, plots
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled, sources
from closurejax.simulation.online import OnlineSpec, Reference, coupled_run, reference_run

__all__ = ["check_config", "format_table", "run_online"]

# the simulation fields that determine the reference (beside the dataset's sections)
_REFERENCE_FIELDS = ("trajectory", "t_start", "t_end", "every")
# simulation fields that change no cached array (what is run, what is drawn)
_PRESENTATION_FIELDS = ("sources", "figure_times", "animation")


def _fingerprint(obj: Any) -> str:
    return keys.digest(obj)[:16]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`"field: old → new"` for every leaf where two JSON keys differ, dotted paths, sorted."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for name in sorted(old.keys() | new.keys()):
            path = f"{prefix}.{name}" if prefix else str(name)
            if name not in old:
                out.append(f"{path}: (absent) → {_short(new[name])}")
            elif name not in new:
                out.append(f"{path}: {_short(old[name])} → (absent)")
            else:
                out.extend(_changes(old[name], new[name], path))
        return out
    return [] if old == new else [f"{prefix or 'key'}: {_short(old)} → {_short(new)}"]


def _stale(path: Path, fingerprint: str, key: Mapping[str, Any]) -> str | None:
    """Why the cached file at `path` is stale for `key` (one line), or None when there is no
    file or it was made with `fingerprint`."""
    meta = atomic.tagged_meta(path)
    if not path.exists() or (meta is not None and meta.get("fingerprint") == fingerprint):
        return None
    if meta is None:
        return f"{path.name} is unreadable"
    if "key" not in meta:
        return f"{path.name} was made by an older version (no cache key)"
    changes = _changes(meta["key"], _jsonable(key))
    if not changes:  # same key, other fingerprint: another version of the digest
        return f"{path.name} has another fingerprint"
    more = f" and {len(changes) - 2} more" if len(changes) > 2 else ""
    return f"{path.name} is stale ({'; '.join(changes[:2])}{more})"


def _context_names(source: Any) -> tuple[str, ...]:
    if isinstance(source, coupled.ReferenceClosure):
        return (source.name,)
    model = getattr(source, "model", None)
    names = getattr(model, "condition_names", ())
    return tuple(n for n in names if n != "omega")


def check_config(config: Mapping[str, Any]) -> OnlineSpec:
    """Validates the study and `simulation` sections together (time grid, sources, test split)
    without computing anything, so a launcher can refuse a bad config before writing files."""
    config = as_dict(config)
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
    log: Callable[[str], None] = print,
    folder: str = "simulation",
) -> dict[str, Any]:
    """The online test of `config` in `<workdir>/<folder>` (module docstring; default
    "simulation"); returns the results dict also written to `results.json`. `log` gets one line
    for every stale cached file recomputed. Another `folder` keeps a second run of the same study
    (e.g. another sampler) beside the first instead of replacing its cached results."""
    config = as_dict(config)
    workdir = Path(workdir).resolve()
    out = workdir / folder
    study = generate.Study.from_config(config)
    spec = OnlineSpec.from_config(config)
    dt = study.params.dt
    start, num_steps, save_every = spec.schedule(dt, study.spec.num_test)
    times = spec.snapshot_times(dt, study.spec.num_test)
    names = tuple(source_names or spec.sources)
    unknown = [n for n in names if n not in sources.SOURCES]
    if unknown:
        raise ValueError(f"unknown closure source(s) {unknown}; allowed: {sources.SOURCES}")
    coarse = ns.make_solver(
        study.params, study.spec.coarse_size, study.spec.stepper, study.spec.closure
    )
    # Build every source first: a missing or incompatible checkpoint fails before any compute.
    built = {name: sources.source_from_config(name, config, workdir, coarse) for name in names}
    context = sorted({c for s in built.values() for c in _context_names(s)})

    data_key = generate.dataset_config(config)
    simulation = config["simulation"]
    ref_key = _jsonable(
        {
            "data": data_key,
            "simulation": {k: simulation[k] for k in _REFERENCE_FIELDS},
            "fields": context,
        }
    )
    ref_fp = _fingerprint(ref_key)
    ref_path = out / "reference_dns.npz"
    reference = Reference.load(ref_path, ref_fp)
    if reference is None:
        if (why := _stale(ref_path, ref_fp, ref_key)) is not None:
            log(f"online: {why}: recomputing the reference")
        bar = tqdm(
            total=start + num_steps, desc="reference DNS", unit="step", disable=not show_progress
        )
        t0 = time.perf_counter()
        reference = reference_run(
            study, spec, ("omega", *context), progress=interrupts.checked(bar.update)
        )
        bar.close()
        reference.save(ref_path, ref_fp, ref_key)
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
    run_settings = {
        k: v for k, v in simulation.items() if k not in (*_PRESENTATION_FIELDS, "sampler_noise")
    }
    for name, source in built.items():
        identity = sources.source_key(name, config, workdir, source)
        noise = spec.sampler_noise if isinstance(source, coupled.DiffusionClosure) else "fresh"
        # keyed only where it changes the run: "fresh" is what every earlier result ran with
        settings = run_settings if noise == "fresh" else {**run_settings, "sampler_noise": noise}
        key = _jsonable(
            {
                "data": data_key,
                "simulation": settings,
                "keep_members": keep_members,
                **identity,
            }
        )
        fp = _fingerprint(key)
        final_path = out / f"{name}.npz"
        partial_path = out / f"{name}.partial.npz"
        loaded = _load_final(final_path, fp)
        if loaded is None:
            if (why := _stale(final_path, fp, key)) is not None:
                log(f"online: {why}: recomputing {name}")
            if (why := _stale(partial_path, fp, key)) is not None:
                log(f"online: {why}: starting {name} over")
                partial_path.unlink(missing_ok=True)
            step = coupled.make_coupled_step(
                coarse, source, spec.every, spec.reuse_noise, sampler_noise=noise
            )
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
                partial_path=partial_path,
                fingerprint=fp,
                progress=interrupts.checked(bar.update),
                key=key,
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
                    "key": key,
                    "seconds": run.seconds,
                    "metrics": metrics,
                    "spectra": loaded["spectra"],
                },
                mean=loaded["mean"],
                members=loaded["members"],
                first_nonfinite_step=loaded["first_nonfinite_step"],
            )
            partial_path.unlink(missing_ok=True)
        ensembles[name] = loaded["members"]
        bad = np.asarray(loaded["first_nonfinite_step"])
        results["sources"][name] = {
            "made_with": {k: v for k, v in identity.items() if k != "source"},
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
    series, styles = {}, {}
    for i, n in enumerate(names):  # one colour per source: ensemble mean solid, members dashed
        metrics = src[n]["metrics"]
        series[f"{n} ens. mean"] = (times, metrics["ensemble_mean_relative_error"])
        series[f"{n} members (mean)"] = (times, metrics["relative_error_mean_member"])
        styles[f"{n} ens. mean"] = {"color": f"C{i}"}
        styles[f"{n} members (mean)"] = {"color": f"C{i}", "ls": "--"}
    plots.curves(  # log axis: the learned closures' errors are ~1 % of the no-closure run's
        series,
        folder / "error.png",
        ylabel="relative error of ω",
        title="online error vs reference",
        logy=True,
        styles=styles,
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
