"""Closure sources for the online solver, built from a study config and trained checkpoints.

`source_from_config(name, config, workdir, solver)` returns the `coupled.ClosureSource` the online
test (`experiments/simulate.py`, the demo) runs under `name`:

| name          | source                                    | checkpoint run          |
|---------------|-------------------------------------------|-------------------------|
| "none"        | `NoClosure` (the papers' "without closure")| —                      |
| "reference"   | `ReferenceClosure("target")`: the DNS's exact closure at each sampling step | — |
| "smagorinsky" | `Smagorinsky` (closure Π only)            | —                       |
| "regression"  | `RegressionClosure` (deterministic FNO)   | `<workdir>/regression`  |
| "diffusion"   | `DiffusionClosure` (P-CDM, papers A/B)    | `<workdir>/score`       |
| "latent"      | `DiffusionClosure` of the L-CDM (paper B) | `<workdir>/latent` (*)  |

(*) the joint run; with `latent.training_mode="two_stage"`: `<workdir>/latent_two_stage/score`.

Before a checkpoint is loaded, `check_checkpoint` compares the configuration it was trained with
(stored in every checkpoint's metadata) with the solver it is about to drive and refuses, naming
both values: a model of another kind than asked for, trained for another closure term (G vs H vs
Π), on other physics (ν, dt, forcing, …), or for another grid where the network is not
resolution-invariant (the latent model's autoencoders are tied to their training grid; the FNO
models need n ≥ 2·modes). A diffusion model whose checkpoint was trained with another `diffusion`
section (SDE, σ, β, parameterisation) than the config's is refused when loaded
(`closurejax.training.run.check_diffusion`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from closurejax.config_section import as_dict
from closurejax.diffusion import conditional, kinds
from closurejax.diffusion.samplers import SamplerConfig
from closurejax.physics.navier_stokes import Solver
from closurejax.simulation import coupled
from closurejax.training import checkpoint, run

__all__ = [
    "MODEL_KINDS",
    "PARAMETER_FREE",
    "SOURCES",
    "IncompatibleModelError",
    "check_checkpoint",
    "checkpoint_dir",
    "source_from_config",
    "source_key",
    "trained_config",
]

MODEL_KINDS = kinds.BY_SOURCE
"""Online source name → the `model.kind` of the training run it loads (`kinds.Kind.source`)."""

PARAMETER_FREE = ("none", "reference", "smagorinsky")
"""Online sources without a trained model."""

SOURCES = (*PARAMETER_FREE, *MODEL_KINDS)
"""Every online closure source name (the one list: the config check, the online test and
`source_from_config` read it)."""

# physics fields that change the closure a model has learnt
_PHYSICS_KEYS = (
    "viscosity",
    "dt",
    "length",
    "drag",
    "forcing",
    "forcing_amplitude",
    "forcing_wavenumber",
    "noise_sigma",
    "noise_alpha",
    "noise_kappa",
)


class IncompatibleModelError(ValueError):
    """A trained checkpoint does not fit the online solver (kind, closure term, physics, grid)."""


def check_checkpoint(
    trained: Mapping[str, Any], kind: str, solver: Solver, where: str = ""
) -> None:
    """Raises `IncompatibleModelError` unless a model trained with config `trained` can drive
    `solver` as a source of `model.kind == kind` (module docstring)."""
    at = f" (checkpoint {where})" if where else ""
    model, data, physics = (
        trained.get("model", {}),
        trained.get("data", {}),
        trained.get("physics", {}),
    )
    if model.get("kind") != kind:
        raise IncompatibleModelError(
            f"the checkpoint{at} holds a model of kind {model.get('kind')!r}, not {kind!r}"
        )
    if data.get("closure") != solver.closure:
        raise IncompatibleModelError(
            f"the checkpoint{at} was trained for closure {data.get('closure')!r}, but the solver "
            f"supplies {solver.closure!r}"
        )
    for key in _PHYSICS_KEYS:
        ours = getattr(solver.params, key)
        theirs = physics.get(key)
        if theirs is None or (ours != theirs and not _close(ours, theirs)):
            raise IncompatibleModelError(
                f"the checkpoint{at} was trained with physics.{key}={theirs!r}, but the solver "
                f"has {ours!r}"
            )
    trained_size = int(data.get("coarse_size", -1))
    if kinds.get(kind).grid_bound:
        if trained_size != solver.size:
            raise IncompatibleModelError(
                f"the {kind} model{at} was trained on a {trained_size}² grid; its autoencoders "
                f"do not transfer to the solver's {solver.size}² grid"
            )
        return
    modes = int(model.get("modes", 0))
    if solver.size < 2 * modes:
        raise IncompatibleModelError(
            f"the FNO{at} keeps {modes} modes per axis and needs a grid of at least {2 * modes}², "
            f"but the solver's grid is {solver.size}²"
        )


def _close(a: Any, b: Any) -> bool:
    try:
        return abs(float(a) - float(b)) <= 1e-12 * max(abs(float(a)), abs(float(b)), 1.0)
    except (TypeError, ValueError):
        return False


def checkpoint_dir(config: Mapping[str, Any], workdir: str | Path, kind: str) -> Path:
    """The checkpoint folder of the `kind` run of a study: `<workdir>/<kind>/checkpoints`, and
    for the two-stage latent baseline its score stage's (`run.run_dir`)."""
    config = as_dict(config)
    study = {**config, "model": {**config.get("model", {}), "kind": kind}}
    return run.run_dir(study, workdir, stage=run.final_stage(study)) / "checkpoints"


def trained_config(
    workdir: str | Path, kind: str, config: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], Path]:
    """The config stored in the latest checkpoint of the `kind` run (`checkpoint_dir`; without
    `config`, `<workdir>/<kind>`) and its folder; FileNotFoundError if there is none."""
    if config is None:
        directory = Path(workdir).resolve() / kind / "checkpoints"
    else:
        directory = checkpoint_dir(config, workdir, kind)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no trained '{kind}' model under {Path(workdir).resolve()} (looked for {directory}); "
            "run experiments/train.py first"
        )
    manager = checkpoint.CheckpointManager(directory, async_save=False)
    try:
        if manager.latest_step() is None:
            raise FileNotFoundError(f"{directory} holds no complete checkpoint")
        return dict(manager.metadata().get("config", {})), directory
    finally:
        manager.close()


def source_from_config(
    name: str,
    config: Mapping[str, Any],
    workdir: str | Path,
    solver: Solver,
    sampler: SamplerConfig | None = None,
    use_ema: bool = True,
) -> coupled.ClosureSource:
    """The closure source `name` for `solver` (module docstring). Trained models are loaded from
    `<workdir>/<model kind>` with the study config `config` (its model and latent sections are
    replaced by the checkpoint's own, so one study config serves every kind; its diffusion section
    must equal the checkpoint's); `sampler` defaults to the config's."""
    config = as_dict(config)
    if name == "none":
        return coupled.NoClosure()
    if name == "reference":
        return coupled.ReferenceClosure("target")
    if name == "smagorinsky":
        return coupled.Smagorinsky(solver.grid, float(config["data"]["smagorinsky_cs"]))
    if name not in MODEL_KINDS:
        raise ValueError(f"unknown closure source {name!r}; allowed: {SOURCES}")
    kind = MODEL_KINDS[name]
    trained, where = trained_config(workdir, kind, config)
    check_checkpoint(trained, kind, solver, str(where))
    model, params = run.load(_source_study(config, trained, kind), workdir, use_ema=use_ema)
    if not kinds.get(kind).samples:
        return coupled.RegressionClosure(model, params)
    sampler = sampler or conditional.sampler_from_config(config["sampler"])
    return coupled.DiffusionClosure(model, params, sampler)


def _source_study(
    config: Mapping[str, Any], trained: Mapping[str, Any], kind: str
) -> dict[str, Any]:
    """The study config a trained source is loaded with: `config` with the checkpoint's model
    (but the config's inference setting `batch_chunk`) and latent sections."""
    config = as_dict(config)
    model_section = {**config["model"], **trained.get("model", {}), "kind": kind}
    if "batch_chunk" in config["model"]:  # an inference setting: the current config decides
        model_section["batch_chunk"] = config["model"]["batch_chunk"]
    study = {**config, "model": model_section}
    for section in kinds.get(kind).sections:
        if section in trained:
            study[section] = trained[section]
    # the config's diffusion section is used: `run.load` refuses one the checkpoint differs from
    return study


def source_key(
    name: str, config: Mapping[str, Any], workdir: str | Path, source: coupled.ClosureSource
) -> dict[str, Any]:
    """Everything that determines what source `name` (built by `source_from_config(name, config,
    workdir, …)`) computes, as JSON types, to key cached online results: the name; for a trained
    model also the model section it was loaded with, the diffusion and sampler sections (not for
    the regression baseline, which has neither), the latent section (latent model) and the
    SHA-256 of the content of its parameters (`run.params_digest`: every array's path, shape,
    dtype and bytes, in tree order), so retrained weights are a new key whatever their step.
    Parameter-free sources depend on the data and simulation sections only (the caller's)."""
    if name not in MODEL_KINDS:
        return {"source": name}
    config = as_dict(config)
    kind = MODEL_KINDS[name]
    trained, _ = trained_config(workdir, kind, config)
    study = _source_study(config, trained, kind)
    key: dict[str, Any] = {"source": name, "model": study["model"]}
    if kinds.get(kind).samples:
        key.update(
            diffusion=conditional.diffusion_identity(study["diffusion"]),
            sampler=conditional.sampler_identity(study["sampler"]),
        )
    for section in kinds.get(kind).sections:
        key[section] = study[section]
    params = getattr(source, "params", None)
    if params is None:
        raise ValueError(f"source {name!r} ({type(source).__name__}) holds no parameters")
    key["checkpoint"] = {"params_sha256": run.params_digest(params)}
    return json.loads(json.dumps(key, default=str))
