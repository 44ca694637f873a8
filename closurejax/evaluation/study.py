"""A whole closure study in one call: data → models → offline table → online test → summary.

`run_study(config, workdir)` runs, in order, every stage of a physical-space study (paper A's
setting, arXiv 2408.02965, §4; the papers' offline table and online test):

1. "data" — the closure dataset (`closurejax.data.generate.generate`);
2. "train_score" — the conditional diffusion model (`closurejax.training.run.train`);
3. "train_regression" — the deterministic baseline, same backbone, MSE loss;
4. "offline" — the offline table at the training resolution and zero-shot at the DNS's grids
   (`closurejax.evaluation.offline_study.run_offline`);
5. "online" — the online test with the config's sampler (`online_study.run_online`,
   `<workdir>/simulation`);
6. "online_fast" — the diffusion source once more with a fast sampler (default DPM-Solver++(2M)
   at 2 NFE) in `<workdir>/simulation_<name><nfe>`;
7. "online_coherent" — the diffusion source once more with the config's sampler and
   `simulation.sampler_noise = "member"` (one sampler draw per member, reused at every sampling
   step: members whose closure samples are correlated in time; `closurejax.simulation.coupled`)
   in `<workdir>/simulation_coherent` — the papers draw anew at every sampling step, which leaves
   the online ensemble under-dispersed;

and writes `<workdir>/study/summary.json`:

    {"offline": {"64": {"single", "ensemble_mean", "regression", "crps", "spread_skill"}, …},
     "online": {"t": [...], "diffusion": [...], "none": [...], "regression": [...],
                "reference": [...], "diffusion_spread_skill": [...], "diffusion_member": [...],
                "diffusion_fast": [...], "diffusion_coherent": [...],
                "diffusion_coherent_spread_skill": [...], "seconds": {source: s}, …},
     "wall_seconds": {"data": s, "train_score": s, …}}

(relative errors unless named otherwise; "online" entries at the config's figure times).

Every stage resumes (the stages themselves resume from their last chunk or checkpoint), and a
finished stage is reused: training and the online runs by their own caches, the offline table
by a key of everything that determines it (the data, model, diffusion, sampler and evaluation
sections and the content of both models' parameters). Stage wall times are kept in
`<workdir>/study/timings.json`: each invocation's seconds, and whether it completed; a stage's
`wall_seconds` is the time spent on it in this workdir, summed over all invocations (interrupted
ones included; a reused stage adds the seconds it takes to find its result current).

`export_results(workdir, folder)` copies what a reader needs into a folder of the repository
(`experiments/results/<study>/`): summary.json, three figures and the trained EMA weights of both
models (float32 .npz, with the config they were trained with and the training set's
normalisation statistics), which `load_exported(path)` turns back into a model and its
parameters — sampling and predicting closures needs no dataset and no training.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from closurejax import atomic, keys
from closurejax.config_section import as_dict
from closurejax.data import generate
from closurejax.diffusion import conditional
from closurejax.evaluation import offline_study, online_study
from closurejax.training import run

__all__ = [
    "STAGES",
    "export_results",
    "load_exported",
    "load_weights",
    "run_study",
    "summarize",
]

STAGES = (
    "data",
    "train_score",
    "train_regression",
    "offline",
    "online",
    "online_fast",
    "online_coherent",
)
"""The stages of `run_study`, in order."""

FIGURES = (
    ("offline/closure_n{n}.png", "offline_closure.png"),
    ("simulation/figures/error.png", "online_error.png"),
    ("simulation/figures/spectra.png", "online_spectra.png"),
)
"""(source in the workdir, name in the results folder) of the exported figures."""

_WEIGHTS_TAG = "closurejax exported weights v1"


def _with(config: Mapping[str, Any], section: str, **values: Any) -> dict[str, Any]:
    """A JSON copy of `config` with `values` set in its `section`."""
    out = json.loads(json.dumps(config))
    out[section].update(values)
    return out


def _with_kind(config: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return _with(config, "model", kind=kind)


COHERENT_FOLDER = "simulation_coherent"
"""Folder of the "online_coherent" stage in the workdir."""


class StageTimings:
    """`<workdir>/study/timings.json`: {stage: [{"seconds", "completed", "at"}, …]}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: dict[str, list[dict[str, Any]]] = (
            json.loads(path.read_text()) if path.exists() else {}
        )

    def add(self, stage: str, seconds: float, completed: bool) -> None:
        """Appends one run of `stage` to the file as it is now, under an exclusive lock: study
        processes that run different stages in one workdir at the same time (e.g. the score model
        and the regression baseline side by side) keep each other's entries."""
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        entry = {"seconds": seconds, "completed": completed, "at": now}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self.path.exists():
                    self.runs = json.loads(self.path.read_text())
                self.runs.setdefault(stage, []).append(entry)
                atomic.write_json(self.path, self.runs)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def wall_seconds(self, stage: str) -> float | None:
        """Seconds spent on `stage` over all invocations (module docstring); None until one
        completed."""
        runs = self.runs.get(stage, [])
        if not any(r["completed"] for r in runs):
            return None
        return float(sum(r["seconds"] for r in runs))


def _offline_key(config: Mapping[str, Any], workdir: Path) -> dict[str, Any]:
    """What determines the offline table: config sections and both models' parameters."""
    key: dict[str, Any] = {
        "data": generate.dataset_config(config),
        **{s: config[s] for s in ("model", "evaluation", "seed")},
        "diffusion": conditional.diffusion_identity(config["diffusion"]),
        "sampler": conditional.sampler_identity(config["sampler"]),
    }
    use_ema = bool(config["evaluation"]["use_ema"])
    for kind in ("score", "regression"):
        if (workdir / kind).exists():
            _, params = run.load(_with_kind(config, kind), workdir, use_ema=use_ema)
            key[f"{kind}_params_sha256"] = run.params_digest(params)
    return json.loads(json.dumps(key, default=str))


def _offline(
    config: dict[str, Any], workdir: Path, log: Callable[[str], None], show_progress: bool
) -> dict:
    key = _offline_key(config, workdir)
    digest = keys.digest(key)
    key_path = workdir / "offline" / "key.json"
    metrics_path = workdir / "offline" / "metrics.json"
    if key_path.exists() and metrics_path.exists():
        stored = json.loads(key_path.read_text())
        if stored.get("sha256") == digest:
            return json.loads(metrics_path.read_text())
        log("offline: the models or settings changed since the stored table: recomputing")
    results = offline_study.run_offline(config, workdir, show_progress=show_progress)
    atomic.write_json(key_path, {"sha256": digest, "key": key})
    return results


def run_study(
    config: Any,
    workdir: str | Path,
    *,
    stages: Sequence[str] = STAGES,
    fast_sampler: tuple[str, int] = ("dpm_solver", 2),
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs `stages` of the study of `config` in `workdir` (module docstring) and returns the
    summary (also written to `<workdir>/study/summary.json`).

    Args:
      config: a study config (ConfigDict or dict) with `model.kind` "score".
      workdir: the study's folder (created if absent).
      stages: a subset of `STAGES` (in any order; they run in `STAGES` order).
      fast_sampler: (sampler name, NFE) of the "online_fast" stage.
      show_progress: progress bars of the stages.
      log: one line per stage started, finished or reused.
    """
    config = as_dict(config)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown study stage(s) {unknown}; allowed: {STAGES}")
    if config["model"]["kind"] != "score":
        raise ValueError(
            f"model.kind={config['model']['kind']!r} is invalid for a study; allowed: 'score' "
            "(the study trains the diffusion model and the regression baseline beside it)"
        )
    if "regression" not in config["simulation"]["sources"]:
        log("study: note: simulation.sources has no 'regression'; the online table lacks it")
    online_study.check_config(config)  # refuse a bad simulation section before any compute
    workdir = Path(workdir).resolve()
    timings = StageTimings(workdir / "study" / "timings.json")
    fast_name, fast_nfe = fast_sampler
    fast_folder = f"simulation_{fast_name}{fast_nfe}"
    actions: dict[str, Callable[[], Any]] = {
        "data": lambda: generate.generate(config, workdir, show_progress=show_progress),
        "train_score": lambda: run.train(config, workdir, show_progress=show_progress, log=log),
        "train_regression": lambda: run.train(
            _with_kind(config, "regression"), workdir, show_progress=show_progress, log=log
        ),
        "offline": lambda: _offline(config, workdir, log, show_progress),
        "online": lambda: online_study.run_online(
            config, workdir, show_progress=show_progress, log=log
        ),
        "online_fast": lambda: online_study.run_online(
            _with(config, "sampler", name=fast_name, num_steps=int(fast_nfe)),
            workdir,
            source_names=("diffusion",),
            show_progress=show_progress,
            log=log,
            folder=fast_folder,
        ),
        "online_coherent": lambda: online_study.run_online(
            _with(config, "simulation", sampler_noise="member"),
            workdir,
            source_names=("diffusion",),
            show_progress=show_progress,
            log=log,
            folder=COHERENT_FOLDER,
        ),
    }
    for stage in STAGES:
        if stage not in stages:
            continue
        log(f"study: {stage} …")
        start = time.perf_counter()
        completed = False
        try:
            actions[stage]()
            completed = True
        finally:
            seconds = time.perf_counter() - start
            timings.add(stage, seconds, completed)
        log(f"study: {stage} done in {seconds:.0f} s")
    # read again: another process may have run stages of this workdir meanwhile
    summary = summarize(config, workdir, StageTimings(timings.path), fast_folder)
    atomic.write_json(workdir / "study" / "summary.json", summary)
    return summary


def _at(times: Sequence[float], values: Sequence[float | None], at: Sequence[float]) -> list:
    times = np.asarray(times)
    return [values[int(np.argmin(np.abs(times - t)))] for t in at]


def _add_diffusion_run(
    summary: dict[str, Any], folder: Path, name: str, times_at: Sequence[float]
) -> dict[str, Any] | None:
    """Adds the diffusion source of the online run in `folder` to `summary["online"]` as `name`
    (ensemble-mean error), `name_member`, `name_spread_skill`, `name_crps` and its seconds;
    returns that run's results (None, adding nothing, if it has not run)."""
    path = folder / "results.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    entry = results["sources"]["diffusion"]
    m = entry["metrics"]
    online = summary.setdefault("online", {"t": list(times_at), "seconds": {}})
    for suffix, metric in (
        ("", "ensemble_mean_relative_error"),
        ("_member", "relative_error_mean_member"),
        ("_spread_skill", "spread_skill"),
        ("_crps", "crps"),
    ):
        online[f"{name}{suffix}"] = _at(results["times"], m[metric], times_at)
    online.setdefault("seconds", {})[name] = entry["seconds"]
    return results


def summarize(
    config: Mapping[str, Any],
    workdir: str | Path,
    timings: StageTimings | None = None,
    fast_folder: str = "simulation_dpm_solver2",
) -> dict[str, Any]:
    """The study's summary (module docstring) from the results its stages left in `workdir`;
    a stage without results leaves its entries out."""
    workdir = Path(workdir)
    timings = timings or StageTimings(workdir / "study" / "timings.json")
    summary: dict[str, Any] = {"study": config["name"], "offline": {}, "online": {}}
    offline_path = workdir / "offline" / "metrics.json"
    if offline_path.exists():
        results = json.loads(offline_path.read_text())
        for name, r in results.items():
            if not name.startswith("score/n"):
                continue
            size = name.split("/n")[1]
            entry = {
                "single": r["rel_error_sample"],
                "ensemble_mean": r["rel_error_mean"],
                "crps": r["crps"],
                "spread_skill": r["spread_skill"],
            }
            regression = results.get(f"regression/n{size}")
            if regression is not None:
                entry["regression"] = regression["rel_error"]
            summary["offline"][size] = entry
    times_at = list(config["simulation"]["figure_times"])
    online_path = workdir / "simulation" / "results.json"
    if online_path.exists():
        results = json.loads(online_path.read_text())
        online: dict[str, Any] = {"t": times_at, "seconds": {}}
        for name, entry in results["sources"].items():
            m = entry["metrics"]
            online[name] = _at(results["times"], m["ensemble_mean_relative_error"], times_at)
            online[f"{name}_member"] = _at(
                results["times"], m["relative_error_mean_member"], times_at
            )
            if "spread_skill" in m:
                online[f"{name}_spread_skill"] = _at(results["times"], m["spread_skill"], times_at)
            if "crps" in m:
                online[f"{name}_crps"] = _at(results["times"], m["crps"], times_at)
            online["seconds"][name] = entry["seconds"]
        summary["online"] = online
    fast = _add_diffusion_run(summary, workdir / fast_folder, "diffusion_fast", times_at)
    if fast is not None:
        summary["online"]["fast_sampler"] = fast["config"]["sampler"]
    _add_diffusion_run(summary, workdir / COHERENT_FOLDER, "diffusion_coherent", times_at)
    summary["wall_seconds"] = {
        stage: seconds for stage in STAGES if (seconds := timings.wall_seconds(stage)) is not None
    }
    return summary


def export_results(config: Any, workdir: str | Path, folder: str | Path) -> list[Path]:
    """Copies summary.json, the figures of `FIGURES` and the EMA weights of the score and
    regression models (`<kind>_weights.npz`: float32 arrays keyed by their tree path, plus the
    config they were trained with and the training set's statistics `{field: {"mean", "std"}}`)
    from `workdir` into `folder`; returns the files written."""
    config = as_dict(config)
    workdir, folder = Path(workdir).resolve(), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    summary = workdir / "study" / "summary.json"
    if not summary.exists():
        raise FileNotFoundError(f"no study summary in {summary}: run the study first")
    shutil.copyfile(summary, folder / "summary.json")
    written.append(folder / "summary.json")
    n = config["data"]["coarse_size"]
    for source, name in FIGURES:
        path = workdir / source.format(n=n)
        if path.exists():
            shutil.copyfile(path, folder / name)
            written.append(folder / name)
    for kind in ("score", "regression"):
        if not (workdir / kind).exists():
            continue
        kind_config = _with_kind(config, kind)
        _, params = run.load(kind_config, workdir, use_ema=True)
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf, np.float32) for path, leaf in leaves}
        data = run.open_study_dataset(kind_config, workdir / "dataset")
        stats = {
            name: {"mean": float(v["mean"]), "std": float(v["std"])}
            for name, v in data.stats.items()
        }
        meta = {"fingerprint": _WEIGHTS_TAG, "config": kind_config, "stats": stats}
        path = folder / f"{kind}_weights.npz"
        atomic.save_tagged_npz(path, meta, **arrays)
        written.append(path)
    return written


def load_exported(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model, EMA parameters, config) from a `<kind>_weights.npz` of `export_results`: the model
    is built from the config and statistics stored with the weights, so
    `model.sample(params, key, {"omega": [B, n, n], …}, sampler)` (score) or
    `model.predict(params, cond)` (regression) runs at any grid size without the dataset."""
    loaded = atomic.load_tagged_npz(path, _WEIGHTS_TAG)
    if loaded is None:
        raise ValueError(f"{path} is not an exported weights file")
    meta = loaded[0]
    if "stats" not in meta:
        raise ValueError(f"{path} holds no normalisation statistics: export it again")
    config = meta["config"]
    model = run.model_from_config(config, meta["stats"])
    n = int(config["data"]["coarse_size"])
    like = jax.eval_shape(lambda key: model.init(key, n), jax.random.PRNGKey(0))
    params, _ = load_weights(path, like)
    return model, params, config


def load_weights(path: str | Path, like: Any) -> tuple[Any, dict[str, Any]]:
    """(params with the structure of `like`, the config they were trained with) from an exported
    `<kind>_weights.npz`; ValueError naming the file if the arrays do not fit `like`."""
    loaded = atomic.load_tagged_npz(path, _WEIGHTS_TAG)
    if loaded is None:
        raise ValueError(f"{path} is not an exported weights file")
    meta, arrays = loaded
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    out = []
    for key_path, leaf in leaves:
        name = jax.tree_util.keystr(key_path)
        if name not in arrays or arrays[name].shape != np.shape(leaf):
            raise ValueError(
                f"{path}: parameter {name} is missing or has another shape than the model's "
                f"{np.shape(leaf)}"
            )
        out.append(arrays[name])
    return jax.tree_util.tree_unflatten(treedef, out), meta["config"]
