"""The cost–accuracy frontier of closure models, measured side by side under one compute budget.

Paper B (arXiv 2506.20771, §4) compares its latent model (L-CDM) with the physical-space P-CDM
at one point each. `run_frontier(config, workdir)` trains every model named in the config's
`frontier.models` (P-CDMs of several sizes, L-CDMs with paper B's or cheaper autoencoders, joint
or two-stage) for the same wall-clock budget on the same data, scores each with every sampler of
`frontier.samplers` on the same test snapshots with the same keys, and times it, so that error
can be read against cost. Stages, in order:

1. "data" — the study's dataset (`closurejax.data.generate.generate`; a frontier config keeps
   its study's `data` section, so it can run in that study's workdir and reuse its dataset);
2. "plan" — each model's training-step time, measured side by side in one stage (the median of
   up to `frontier.plan_steps` steps after a compiling one — one only where a step takes
   minutes, `budget.PLAN_EXTRA_SECONDS` — in a scratch run that is then deleted),
   and its length `frontier.train_seconds` ÷ that time → `<workdir>/frontier/plan.json`. Equal
   compute is the comparison: a model with a costly step sees fewer steps, and its learning-rate
   warm-up is at most a tenth of its run. The two-stage latent baseline spends the budget on its
   autoencoders (stage 1, `latent.stage1_steps`) and then trains its latent score for as many
   steps (paper B: equal epochs for both stages); its stage 2 is cheap and its time is
   reported. A model's plan is kept until its config or the
   budget changes (then it is measured again and its old run must be deleted: training refuses
   a checkpoint of another architecture);
3. "train" — each model for its planned steps in `<workdir>/frontier/<model>` (`training.run`:
   exact resume, so an interrupted frontier continues where it stopped);
4. "evaluate" — per model × sampler: the offline scores of `closurejax.evaluation.offline` at
   the training resolution (`evaluation.max_snapshots` test snapshots, `evaluation.ensemble_size`
   samples each, key `PRNGKey(seed)` for every model), the parameter count, XLA's FLOP count of
   one closure sample (`offline.sample_flops`), the seconds of one compiled call per closure
   sample at each of `frontier.timing_batches` (median of `frontier.timing_repeats`), and for
   latent models the autoencoders' reconstruction errors and the spread of the encoded test
   targets (`latent.latent_std`; a collapsed latent has a spread far below the sampler's σ).
   Each entry is cached in `<workdir>/frontier/entries/` under a key of everything it depends on
   (model and sampler config, evaluation section, seed, timing settings, the parameters'
   digest): a retrained model or a changed setting is scored again, never reused;
5. "online" — the cheapest latent model that meets the accuracy bar (`efficient_latent`: an
   ensemble-mean error ≤ (1 + `frontier.tolerance`) × that of `frontier.reference` at the same
   sampler and NFE; here the config's sampler, the online test's) runs the online test
   (`closurejax.evaluation.online_study`, `frontier.online_members` members) beside the
   reference and the sources "none" and "reference", in `<workdir>/frontier/online` (a workdir
   whose `dataset`, `score` and `latent` point at the study's dataset and the two frontier
   runs); its errors at the figure times and wall times go into frontier.json under "online".
   When no latent model meets the bar, the stage says so there and runs nothing.

Results: `<workdir>/frontier/frontier.json`

    {"study", "train_seconds", "samplers", "models": {name: {"kind", "params", "planned_steps",
     "step_seconds", "train_seconds", …}}, "entries": [{"model", "sampler", "nfe", "single",
     "ensemble_mean", "crps", "spread_skill", "gflop_per_sample", "seconds_b1", "seconds_b100",
     "pareto", …}, …]}

("single": the relative error of one sample, averaged over samples and snapshots;
"ensemble_mean": that of the ensemble mean; `seconds_b<B>`: seconds per closure sample in calls
of B samples; "pareto": no other entry is both cheaper at the largest timing batch and at least
as accurate in ensemble mean) and `frontier.png`, ensemble-mean error against that cost with the
frontier drawn. `export_frontier` copies both into a results folder of the repository.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closurejax import atomic
from closurejax.config_section import as_dict
from closurejax.data import generate, store
from closurejax.diffusion import conditional, kinds, latent, latent_model
from closurejax.evaluation import offline, online_study, plots
from closurejax.evaluation.study import StageTimings
from closurejax.keys import digest
from closurejax.models import fno
from closurejax.timing import time_fn
from closurejax.training import budget, run

__all__ = [
    "STAGES",
    "check_frontier",
    "efficient_latent",
    "export_frontier",
    "format_results",
    "model_config",
    "pareto",
    "run_frontier",
]

STAGES = ("data", "plan", "train", "evaluate", "online")
"""The stages of `run_frontier`, in order."""

FOLDER = "frontier"
"""Folder of the frontier in the workdir: plan, runs, entries, results."""

_SECTION_FIELDS = (
    "models",
    "samplers",
    "timing_batches",
    "timing_repeats",
    "train_seconds",
    "plan_steps",
    "reference",
    "tolerance",
    "online_members",
)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODEL_KINDS = kinds.SAMPLING


def _plain(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(as_dict(config)))


def _bad(field: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"frontier.{field}={value!r} is invalid; allowed: {allowed}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_frontier(config: Any) -> dict[str, Any]:
    """The validated `frontier` section of `config` as plain data (one-line ValueError naming
    the field otherwise); every model's config is built and checked too."""
    config = _plain(config)
    if "frontier" not in config:
        raise ValueError(
            "the config has no 'frontier' section; add closurejax.config.frontier_section() "
            "and name its models"
        )
    section = config["frontier"]
    unknown = sorted(set(section) - set(_SECTION_FIELDS))
    if unknown:
        raise ValueError(f"frontier has unknown field(s) {unknown}; allowed: {_SECTION_FIELDS}")
    models = section.get("models") or {}
    if not isinstance(models, Mapping) or not models:
        raise _bad("models", models, "a non-empty {name: {section: {field: value}}}")
    for name in models:
        if not _NAME.match(name):
            raise _bad("models", name, "names of lower-case letters, digits and '_'")
    seconds = section.get("train_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise _bad("train_seconds", seconds, "a number of seconds > 0")
    for field in ("plan_steps", "timing_repeats"):
        if not _positive_int(section.get(field)):
            raise _bad(field, section.get(field), "an int ≥ 1")
    batches = section.get("timing_batches")
    if not isinstance(batches, list) or not batches or not all(map(_positive_int, batches)):
        raise _bad("timing_batches", batches, "a non-empty list of ints ≥ 1")
    samplers = section.get("samplers")
    if not isinstance(samplers, list) or not samplers:
        raise _bad("samplers", samplers, "a non-empty list of (name, NFE)")
    for entry in samplers:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or entry[0] not in _sampler_names()
            or not _positive_int(entry[1])
        ):
            raise _bad("samplers", entry, f"(name, steps ≥ 1) with name in {_sampler_names()}")
    if section.get("reference") not in models:
        raise _bad("reference", section.get("reference"), f"one of the models {sorted(models)}")
    tolerance = section.get("tolerance")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        raise _bad("tolerance", tolerance, "a number ≥ 0")
    if not _positive_int(section.get("online_members")):
        raise _bad("online_members", section.get("online_members"), "an int ≥ 1")
    for name in models:
        model_config(config, name)
    return section


def _sampler_names() -> tuple[str, ...]:
    from closurejax.diffusion import samplers

    return tuple(samplers.INTEGRATORS)


def model_config(config: Any, name: str) -> dict[str, Any]:
    """The study config of frontier model `name`: `config` without its `frontier` section, with
    the model's overrides set (each must name an existing section and field: one-line
    ValueError otherwise). The model must be a sampling model (`model.kind` "score" or
    "latent")."""
    config = _plain(config)
    models = config.get("frontier", {}).get("models", {})
    if name not in models:
        raise ValueError(f"frontier.models has no model {name!r}; it has {sorted(models)}")
    out = {k: v for k, v in config.items() if k != "frontier"}
    overrides = models[name]
    if not isinstance(overrides, Mapping):
        raise _bad(f"models.{name}", overrides, "{section: {field: value}}")
    for section, values in overrides.items():
        if section not in out or not isinstance(out[section], dict):
            sections = sorted(k for k, v in out.items() if isinstance(v, dict))
            raise ValueError(
                f"frontier.models.{name} overrides unknown section {section!r}; sections: "
                f"{sections}"
            )
        if not isinstance(values, Mapping):
            raise _bad(f"models.{name}.{section}", values, "{field: value}")
        for field, value in values.items():
            if field not in out[section]:
                raise ValueError(
                    f"frontier.models.{name} sets unknown field {section}.{field}; fields of "
                    f"{section}: {sorted(out[section])}"
                )
            out[section][field] = value
    kind = out["model"]["kind"]
    if kind not in _MODEL_KINDS:
        raise ValueError(
            f"frontier.models.{name} has model.kind={kind!r}; allowed: {_MODEL_KINDS} (the "
            "frontier compares closure samplers)"
        )
    out["name"] = f"{config['name']}_{name}"
    return out


def _run_name(name: str) -> str:
    return f"{FOLDER}/{name}"


# --- plan ------------------------------------------------------------------------------------


def _plan_key(model: Mapping[str, Any], seconds: float) -> str:
    """What a model's plan depends on: its config less the run length, and the budget."""
    return budget.plan_key(model, seconds)


def _plan(config: dict[str, Any], workdir: Path, log: Callable[[str], None]) -> dict:
    section = config["frontier"]
    seconds = float(section["train_seconds"])
    path = workdir / FOLDER / "plan.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    plan = {}
    for name in section["models"]:
        model = model_config(config, name)
        key = _plan_key(model, seconds)
        if stored.get(name, {}).get("key") == key:
            plan[name] = stored[name]
            continue
        log(f"frontier: plan {name}: timing {section['plan_steps']} training steps …")
        measured = budget.measure_step(
            run.train, model, workdir, f"{FOLDER}/plan_scratch/{name}", int(section["plan_steps"])
        )
        entry = {
            "key": key,
            **measured,
            "steps": budget.steps_for(seconds, measured["step_seconds"]),
        }
        plan[name] = entry
        stored[name] = entry
        atomic.write_json(path, stored)
        log(
            f"frontier: plan {name}: {measured['step_seconds']:.3f} s per step → "
            f"{entry['steps']} steps"
        )
    return plan


def _planned(config: dict[str, Any], name: str, plan: Mapping[str, Any]) -> dict[str, Any]:
    """`model_config(name)` with its planned run length: the budget ÷ the measured step time
    (the two-stage baseline: that many steps for each stage), a learning-rate warm-up of at
    most a tenth of the run (a run shorter than the configured warm-up would never reach its
    learning rate), and a checkpoint at least every `budget.CHECKPOINT_SECONDS` of training
    (`budget.with_steps`)."""
    model = model_config(config, name)
    key = _plan_key(model, config["frontier"]["train_seconds"])
    if name not in plan or plan[name]["key"] != key:
        raise ValueError(
            f"frontier model {name!r} has no current plan (its config or the budget changed): "
            "run the 'plan' stage"
        )
    return budget.with_steps(
        model, float(config["frontier"]["train_seconds"]), plan[name]["step_seconds"]
    )


def _read_plan(workdir: Path) -> dict[str, Any]:
    path = workdir / FOLDER / "plan.json"
    if not path.exists():
        raise FileNotFoundError(f"no frontier plan in {path}: run the 'plan' stage first")
    return json.loads(path.read_text())


# --- evaluate --------------------------------------------------------------------------------


def _timing_cond(fields: Mapping[str, np.ndarray], names: Sequence[str], batch: int) -> dict:
    total = len(fields[names[0]])
    index = np.arange(batch) % total
    return {n: jnp.asarray(fields[n][index]) for n in names}


def _entry(
    model: Any,
    params: Any,
    fields: Mapping[str, np.ndarray],
    config: Mapping[str, Any],
    sampler_name: str,
    steps: int,
) -> dict[str, Any]:
    section, evaluation = config["frontier"], config["evaluation"]
    sampler = conditional.sampler_from_config(
        config["sampler"], name=sampler_name, num_steps=int(steps)
    )
    key = jax.random.PRNGKey(int(config["seed"]))
    summary, _ = offline.evaluate_score_model(
        model, params, fields, sampler, int(evaluation["ensemble_size"]), key
    )
    names = list(model.condition_names)
    one = _timing_cond(fields, names, 1)
    entry: dict[str, Any] = {
        "sampler": sampler_name,
        "num_steps": int(steps),
        "nfe": sampler.nfe,
        "single": summary["rel_error_sample"],
        "ensemble_mean": summary["rel_error_mean"],
        "crps": summary["crps"],
        "spread_skill": summary["spread_skill"],
        "spread": summary["spread"],
        "num_snapshots": summary["num_snapshots"],
        "ensemble_size": summary["ensemble_size"],
        "gflop_per_sample": offline.sample_flops(model, params, one, sampler) / 1e9,
    }
    sample = jax.jit(lambda p, k, c: model.sample(p, k, c, sampler))
    for batch in section["timing_batches"]:
        cond = _timing_cond(fields, names, int(batch))
        seconds = time_fn(sample, params, key, cond, repeats=int(section["timing_repeats"]))
        entry[f"seconds_b{batch}"] = seconds["median"] / int(batch)
    return entry


def _model_facts(model: Any, params: Any, fields: Mapping[str, np.ndarray]) -> dict[str, Any]:
    facts: dict[str, Any] = {"kind": model.kind, "params": fno.count_params(params)}
    if model.kind == latent_model.KIND:
        facts["params_per_part"] = {k: fno.count_params(v) for k, v in params.items()}
        recon = offline.evaluate_reconstruction(model, params, fields)
        facts["reconstruction"] = {k: v["rel_error"] for k, v in recon.items()}
        targets = jnp.asarray(fields["target"][: min(100, len(fields["target"]))])
        z = jax.jit(model.encode, static_argnums=1)(params, "target", targets)
        facts["latent_std"] = float(latent.latent_std(z))
    return facts


def _evaluate(
    config: dict[str, Any], workdir: Path, plan: Mapping[str, Any], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    section, evaluation = config["frontier"], config["evaluation"]
    data = store.open_dataset(workdir / "dataset")
    entries_dir = workdir / FOLDER / "entries"
    out = []
    fields_cache: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    for name in section["models"]:
        model_cfg = _planned(config, name, plan)
        model, params = run.load(
            model_cfg, workdir, run_name=_run_name(name), use_ema=bool(evaluation["use_ema"])
        )
        names = (*model.condition_names, "target")
        if names not in fields_cache:
            wanted = sorted({*names, "omega"})
            fields_cache[names] = offline.test_fields(
                data, wanted, max_snapshots=int(evaluation["max_snapshots"])
            )
        fields = fields_cache[names]
        facts = None
        for sampler_name, steps in section["samplers"]:
            key = digest(
                {
                    "model": {k: v for k, v in model_cfg.items() if k != "name"},
                    "sampler": sampler_name,
                    "steps": int(steps),
                    "timing": [section["timing_batches"], section["timing_repeats"]],
                    "params_sha256": run.params_digest(params),
                }
            )
            path = entries_dir / f"{name}__{sampler_name}{steps}.json"
            if path.exists():
                stored = json.loads(path.read_text())
                if stored.get("key") == key:
                    out.append(stored["entry"])
                    continue
                log(f"frontier: {name} / {sampler_name} {steps}: stale entry, scoring again")
            log(f"frontier: scoring {name} with {sampler_name} ({steps} steps) …")
            if facts is None:
                facts = _model_facts(model, params, fields)
            entry = {"model": name, **_entry(model, params, fields, config, sampler_name, steps)}
            entry.update(facts)
            atomic.write_json(path, {"key": key, "entry": entry})
            out.append(entry)
    return out


def pareto(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Whether each (cost, error) point is on the frontier: no other point has cost ≤ and
    error ≤ with one of them strictly smaller. NaN points are never on it."""
    flags = []
    for i, (c, e) in enumerate(points):
        if math.isnan(c) or math.isnan(e):
            flags.append(False)
            continue
        dominated = any(
            j != i and c2 <= c and e2 <= e and (c2 < c or e2 < e)
            for j, (c2, e2) in enumerate(points)
        )
        flags.append(not dominated)
    return flags


def _results(
    config: dict[str, Any],
    workdir: Path,
    plan: Mapping[str, Any],
    entries: list[dict[str, Any]],
    timings: StageTimings,
) -> dict[str, Any]:
    section = config["frontier"]
    cost = f"seconds_b{max(section['timing_batches'])}"
    flags = pareto([(e[cost], e["ensemble_mean"]) for e in entries])
    for entry, flag in zip(entries, flags, strict=True):
        entry["pareto"] = flag
    models = {}
    for name in section["models"]:
        p = plan[name]
        mine = next((e for e in entries if e["model"] == name), {})
        models[name] = {
            "kind": mine.get("kind"),
            "params": mine.get("params"),
            "planned_steps": budget.steps_for(float(section["train_seconds"]), p["step_seconds"]),
            "step_seconds": p["step_seconds"],
            "train_seconds": timings.wall_seconds(f"train/{name}"),
        }
    return {
        "study": config["name"],
        "train_seconds": float(section["train_seconds"]),
        "samplers": section["samplers"],
        "cost": cost,
        "ensemble_size": int(config["evaluation"]["ensemble_size"]),
        "max_snapshots": int(config["evaluation"]["max_snapshots"]),
        "models": models,
        "entries": entries,
    }


def efficient_latent(
    results: Mapping[str, Any],
    reference: str = "pcdm",
    tolerance: float = 0.1,
    sampler: tuple[str, int] | None = None,
) -> dict[str, Any] | str:
    """The cheapest latent-model entry of `results` (frontier.json) whose ensemble-mean error is
    at most (1 + `tolerance`) × that of model `reference` at the same sampler and NFE, with the
    reference's entry and the speed-up (reference's cost ÷ its, at `results["cost"]`); only
    entries of `sampler` (name, num_steps) when given. Returns the reason as a string when no
    latent model meets the bar."""
    cost = results["cost"]
    refs = {(e["sampler"], e["nfe"]): e for e in results["entries"] if e["model"] == reference}
    if not refs:
        return f"the frontier has no entry of the reference model {reference!r}"
    best = None
    checked = 0
    for e in results["entries"]:
        if e.get("kind") != latent_model.KIND:
            continue
        if sampler is not None and (e["sampler"], e["num_steps"]) != tuple(sampler):
            continue
        ref = refs.get((e["sampler"], e["nfe"]))
        if ref is None:
            continue
        checked += 1
        if e["ensemble_mean"] <= (1 + tolerance) * ref["ensemble_mean"]:
            if best is None or e[cost] < best[0][cost]:
                best = (e, ref)
    if best is None:
        where = "" if sampler is None else f" with {sampler[0]} ({sampler[1]} steps)"
        return (
            f"no latent model is within {tolerance:.0%} of {reference!r}'s ensemble-mean error"
            f"{where} ({checked} latent entries compared)"
        )
    entry, ref = best
    return {
        "model": entry["model"],
        "sampler": entry["sampler"],
        "num_steps": entry["num_steps"],
        "nfe": entry["nfe"],
        "ensemble_mean": entry["ensemble_mean"],
        "reference": reference,
        "reference_ensemble_mean": ref["ensemble_mean"],
        "speedup": ref[cost] / entry[cost],
        "cost": cost,
    }


ONLINE_SOURCES = ("none", "diffusion", "latent", "reference")
"""Sources of the "online" stage: the reference P-CDM is "diffusion", the latent model
"latent"."""


def _link(link: Path, target: Path) -> None:
    """`link` → `target` (relative), replacing a link that points elsewhere."""
    rel = Path(os.path.relpath(target, link.parent))
    if link.is_symlink():
        if Path(os.readlink(link)) == rel:
            return
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a link; remove it")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(rel, target_is_directory=True)


def _online(
    config: dict[str, Any],
    workdir: Path,
    results: Mapping[str, Any],
    show_progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    section, sampler = config["frontier"], config["sampler"]
    reference = section["reference"]
    choice = efficient_latent(
        results,
        reference,
        float(section["tolerance"]),
        (sampler["name"], int(sampler["num_steps"])),
    )
    if isinstance(choice, str):
        log(f"frontier: online: skipped — {choice}")
        return {"skipped": choice}
    plan = _read_plan(workdir)
    ref_cfg = _planned(config, reference, plan)
    if kinds.get(ref_cfg["model"]["kind"]).source != "diffusion":
        raise ValueError(
            f"frontier.reference={reference!r} is a {ref_cfg['model']['kind']!r} model; the "
            "online stage runs it as the 'diffusion' source: it must be a P-CDM ('score')"
        )
    lat_cfg = _planned(config, choice["model"], plan)
    online = {**ref_cfg, "latent": lat_cfg["latent"]}
    online["simulation"] = {
        **ref_cfg["simulation"],
        "ensemble_size": int(section["online_members"]),
        "sources": list(ONLINE_SOURCES),
    }
    folder = workdir / FOLDER / "online"
    _link(folder / "dataset", workdir / "dataset")
    _link(folder / "score", workdir / FOLDER / reference)
    _link(folder / run.default_run_name(lat_cfg), workdir / FOLDER / choice["model"])
    log(
        f"frontier: online: {choice['model']} beside {reference} "
        f"({section['online_members']} members) …"
    )
    ran = online_study.run_online(
        online, folder, source_names=ONLINE_SOURCES, show_progress=show_progress, log=log
    )
    out: dict[str, Any] = {
        "latent_model": choice["model"],
        "reference_model": reference,
        "members": int(section["online_members"]),
        "t": list(ran["config"]["simulation"]["figure_times"]),
        "seconds": {n: ran["sources"][n]["seconds"] for n in ONLINE_SOURCES},
    }
    for name in ONLINE_SOURCES:  # at the figure times, {"t=35": value, …} in time order
        at = ran["sources"][name]["at_figure_times"]
        out[name] = list(at["ensemble_mean_relative_error"].values())
        out[f"{name}_member"] = list(at["relative_error_mean_member"].values())
        out[f"{name}_spread_skill"] = list(at["spread_skill"].values())
    return out


def run_frontier(
    config: Any,
    workdir: str | Path,
    *,
    stages: Sequence[str] = STAGES,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Runs `stages` of the frontier of `config` in `workdir` (module docstring); returns the
    results (also `<workdir>/frontier/frontier.json`) when "evaluate" ran, else None."""
    config = _plain(config)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown frontier stage(s) {unknown}; allowed: {STAGES}")
    check_frontier(config)
    workdir = Path(workdir).resolve()
    timings = StageTimings(workdir / FOLDER / "timings.json")

    def timed(label: str, action: Callable[[], Any]) -> Any:
        start, completed = time.perf_counter(), False
        try:
            result = action()
            completed = True
            return result
        finally:
            timings.add(label, time.perf_counter() - start, completed)

    plan: dict[str, Any] = {}
    results = None
    for stage in STAGES:
        if stage not in stages:
            continue
        log(f"frontier: {stage} …")
        if stage == "data":
            timed("data", lambda: generate.generate(config, workdir, show_progress=show_progress))
        elif stage == "plan":
            plan = timed("plan", lambda: _plan(config, workdir, log))
        elif stage == "train":
            plan = plan or _read_plan(workdir)
            for name in config["frontier"]["models"]:
                model = _planned(config, name, plan)
                log(f"frontier: train {name} ({model['training']['num_steps']} steps) …")
                timed(
                    f"train/{name}",
                    lambda model=model, name=name: run.train(
                        model,
                        workdir,
                        run_name=_run_name(name),
                        show_progress=show_progress,
                        log=log,
                    ),
                )
        elif stage == "evaluate":
            plan = plan or _read_plan(workdir)
            entries = timed("evaluate", lambda p=plan: _evaluate(config, workdir, p, log))
            results = _results(config, workdir, plan, entries, timings)
            out = workdir / FOLDER
            atomic.write_json(out / "frontier.json", results)
            plots.cost_accuracy(
                results["entries"],
                results["cost"],
                out / "frontier.png",
                f"{config['name']}: {results['train_seconds']:.0f} s of training per model",
            )
        else:  # "online"
            path = workdir / FOLDER / "frontier.json"
            if results is None:
                if not path.exists():
                    raise FileNotFoundError(f"no {path}: run the 'evaluate' stage first")
                results = json.loads(path.read_text())
            results["online"] = timed(
                "online", lambda r=results: _online(config, workdir, r, show_progress, log)
            )
            atomic.write_json(path, results)
    return results


def export_frontier(workdir: str | Path, folder: str | Path) -> list[Path]:
    """Copies frontier.json and frontier.png of `workdir` into `folder` (e.g.
    `experiments/results/<study>/`); returns the written paths."""
    source = Path(workdir).resolve() / FOLDER
    missing = [n for n in ("frontier.json", "frontier.png") if not (source / n).exists()]
    if missing:
        raise FileNotFoundError(f"{source} lacks {missing}: run the 'evaluate' stage first")
    written = []
    for name in ("frontier.json", "frontier.png"):
        target = Path(folder) / name
        atomic.write_bytes(target, (source / name).read_bytes())
        written.append(target)
    return written


def format_results(results: Mapping[str, Any]) -> str:
    """The frontier as a text table, one row per model × sampler ("*": on the frontier)."""
    batches = (
        sorted(
            int(k.removeprefix("seconds_b"))
            for k in results["entries"][0]
            if k.startswith("seconds_b")
        )
        if results["entries"]
        else []
    )
    head = ["model", "sampler", "nfe", "single", "ens.mean", "crps", "SS", "GFLOP"]
    head += [f"s/sample b{b}" for b in batches]
    rows = [head]
    for e in results["entries"]:
        row = [
            e["model"] + (" *" if e.get("pareto") else ""),
            e["sampler"],
            str(e["nfe"]),
            f"{e['single']:.3f}",
            f"{e['ensemble_mean']:.3f}",
            f"{e['crps']:.3g}",
            f"{e['spread_skill']:.2f}",
            f"{e['gflop_per_sample']:.2f}",
        ]
        row += [f"{e[f'seconds_b{b}']:.4f}" for b in batches]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
