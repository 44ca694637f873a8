"""The papers' online (a-posteriori) test: a reference DNS and coupled coarse ensembles beside it.

Papers A and B (arXiv 2408.02965, online use): a 64² solver with dt = 1e-3 runs from t = 30 to 50 s
(20 000 steps) with the closure sampled every k = 5 steps (reused in between plus N(0, (5e-5)²)
noise); sparse measurements come from the reference trajectory; paper B runs 100 members from one
initial condition. The reference here is the DNS of a test trajectory of the study, regenerated
with the dataset's seeds (same initial condition and noise keys as `closurejax.data.generate`), so
it can run past the dataset's last snapshot.

* `OnlineSpec` — the `simulation` config section, validated against the time step.
* `reference_run(study, spec)` — the DNS from t = 0 of test trajectory `spec.trajectory`, observed
  on the coarse grid every k steps from t_start to t_end: vorticity, exact closure target and the
  sparse-measurement encodings (`generate.observer`), `[num_steps / k + 1, n, n]` each.
* `coupled_run(...)` — an ensemble of coupled coarse runs from the reference's coarse state at
  t_start (member m keyed by fold_in(run key, m)), in chunks with a progress bar; snapshots every
  `save_every` steps, `[M, S, n, n]`; resumable from a partial file.

Key layout: the reference DNS uses the trajectory's run key (`generate.trajectory_keys`), and the
coupled runs use the same run key with the step counter continuing from t_start / dt, so a source
that needs the step's physical noise (closure Π; `ExactClosure`) sees the reference's noise. With
closure H or G the coarse solver draws no noise itself (σẆ is part of the closure), and members
differ through their closure samples only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh

from closurejax import atomic
from closurejax.config_section import from_section, invalid
from closurejax.data import generate
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled, sources
from closurejax.simulation.coupled import SAMPLER_NOISE

__all__ = ["SOURCES", "OnlineSpec", "Reference", "RunResult", "coupled_run", "reference_run"]

SOURCES = sources.SOURCES  # the one list, kept where the sources are built


def _bad(field: str, value: Any, allowed: str) -> ValueError:
    return invalid("simulation", field, value, allowed)


@dataclasses.dataclass(frozen=True)
class OnlineSpec:
    """The `simulation` config section (fields documented in closurejax.config)."""

    trajectory: int = 0
    t_start: float = 30.0
    t_end: float = 50.0
    every: int = 5
    reuse_noise: float = 5e-5
    sampler_noise: str = "fresh"
    ensemble_size: int = 100
    save_interval: float = 0.1
    sources: tuple[str, ...] = ("none", "diffusion")
    figure_times: tuple[float, ...] = (35.0, 40.0, 45.0, 50.0)
    animation: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "figure_times", tuple(float(t) for t in self.figure_times))
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise _bad("every", self.every, "an int ≥ 1")
        if not self.t_start >= 0:
            raise _bad("t_start", self.t_start, "≥ 0")
        if not self.t_end > self.t_start:
            raise _bad("t_end", self.t_end, f"> t_start = {self.t_start}")
        if not self.reuse_noise >= 0:
            raise _bad("reuse_noise", self.reuse_noise, "≥ 0")
        if self.sampler_noise not in SAMPLER_NOISE:
            raise _bad("sampler_noise", self.sampler_noise, f"one of {SAMPLER_NOISE}")
        if not isinstance(self.ensemble_size, int) or self.ensemble_size < 1:
            raise _bad("ensemble_size", self.ensemble_size, "an int ≥ 1")
        unknown = [s for s in self.sources if s not in SOURCES]
        if not self.sources or unknown:
            raise _bad("sources", self.sources, f"a non-empty tuple from {SOURCES}")
        outside = [t for t in self.figure_times if not self.t_start <= t <= self.t_end]
        if outside:
            raise _bad("figure_times", self.figure_times, f"times in [t_start, t_end]: {outside}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OnlineSpec:
        if "simulation" not in config:
            raise ValueError("config has no 'simulation' section")
        return from_section(cls, config["simulation"], "simulation")

    def schedule(self, dt: float, num_test: int) -> tuple[int, int, int]:
        """(start step, steps, steps per snapshot), checked to be whole multiples of dt and k."""

        def whole(name: str, value: float) -> int:
            steps = round(value / dt)
            if not math.isclose(steps * dt, value, rel_tol=1e-9, abs_tol=1e-12):
                raise _bad(name, value, f"a multiple of physics.dt={dt}")
            return steps

        if not 0 <= self.trajectory < num_test:
            raise _bad(
                "trajectory", self.trajectory, f"an index into the test split [0, {num_test})"
            )
        start = whole("t_start", self.t_start)
        num_steps = whole("t_end", self.t_end) - start
        save_every = whole("save_interval", self.save_interval)
        if save_every < 1 or save_every % self.every:
            raise _bad(
                "save_interval",
                self.save_interval,
                f"a positive multiple of every·dt = {self.every * dt}",
            )
        if num_steps % save_every:
            raise _bad("t_end", self.t_end, "t_start + a whole number of save intervals")
        return start, num_steps, save_every

    def snapshot_times(self, dt: float, num_test: int) -> np.ndarray:
        """Times `[S]` of the snapshots (t_start, t_start + save_interval, …, t_end)."""
        start, num_steps, save_every = self.schedule(dt, num_test)
        return (start + np.arange(0, num_steps + 1, save_every)) * dt


@dataclasses.dataclass(frozen=True)
class Reference:
    """The reference trajectory on the coarse grid.

    Attributes:
      fields: `{name: [num_steps / k + 1, n, n]}` at the sampling steps t_start, t_start + k·dt,
        …, t_end: "omega", "target" (the exact closure of that step) and the sparse encodings.
      start_step: step counter at t_start.
      every: k, steps between entries of `fields`.
      run_key: the trajectory's run key (raw uint32 `[2]`).
    """

    fields: dict[str, np.ndarray]
    start_step: int
    every: int
    run_key: np.ndarray

    def snapshots(self, save_every: int) -> np.ndarray:
        """Reference vorticity every `save_every` steps `[S, n, n]` (t_start first)."""
        return self.fields["omega"][:: save_every // self.every]

    def context(self, names: Sequence[str], start: int, count: int) -> dict[str, np.ndarray]:
        """Per-step context `{name: [count, n, n]}` of rollout steps start … start + count − 1
        (offsets from t_start): the entry at the last sampling step at or before each step."""
        index = (start + np.arange(count)) // self.every
        return {name: self.fields[name][index] for name in names}

    def save(
        self, path: str | Path, fingerprint: str, key: Mapping[str, Any] | None = None
    ) -> None:
        """Saves the reference with `fingerprint` (and the `key` it digests, to say later what
        changed) in its metadata."""
        meta = {"fingerprint": fingerprint, "start_step": self.start_step, "every": self.every}
        if key is not None:
            meta["key"] = key
        fields = {f"field_{k}": v for k, v in self.fields.items()}
        atomic.save_tagged_npz(path, meta, run_key=self.run_key, **fields)

    @classmethod
    def load(cls, path: str | Path, fingerprint: str) -> Reference | None:
        """The reference saved at `path` if it was made with `fingerprint`, else None."""
        loaded = atomic.load_tagged_npz(path, fingerprint)
        if loaded is None:
            return None
        meta, arrays = loaded
        fields = {k[6:]: v for k, v in arrays.items() if k.startswith("field_")}
        if "omega" not in fields or "run_key" not in arrays:
            return None  # not a reference file: recompute
        return cls(fields, int(meta["start_step"]), int(meta["every"]), arrays["run_key"])


def reference_run(
    study: generate.Study,
    spec: OnlineSpec,
    names: Sequence[str] = ("omega", "target"),
    progress: Callable[[int], None] | None = None,
    steps_per_call: int = 2000,
) -> Reference:
    """The DNS of test trajectory `spec.trajectory` observed on the coarse grid every k steps
    from t_start to t_end (module docstring). `names`: which observer fields to keep (the
    observer's names at the coarse size: omega, target, sparse_interpolated, …)."""
    params, data_spec, solver = study.params, study.spec, study.solver
    start, num_steps, _ = spec.schedule(params.dt, data_spec.num_test)
    index = data_spec.test_trajectories()[spec.trajectory]
    _, run_keys = generate.trajectory_keys(study.seed, [index])
    run_key = run_keys[0]
    state = solver.initial_state(study.initial_vorticity([index])[0])
    observe_all = generate.observer(study, [data_spec.coarse_size])
    names = tuple(dict.fromkeys(("omega", *names)))

    def observe(s: ns.State) -> dict[str, jax.Array]:
        out = observe_all(s, ns.step_key(run_key, s))
        missing = [n for n in names if n not in out]
        if missing:
            raise ValueError(f"the reference has no field(s) {missing}; it has {sorted(out)}")
        return {n: out[n] for n in names}

    @jax.jit
    def burn(s: ns.State, count: jax.Array) -> ns.State:
        return lax.fori_loop(0, count, lambda _, x: solver.step(x, ns.step_key(run_key, x)), s)

    @jax.jit
    def blocks(s: ns.State, count_marker: jax.Array) -> tuple[ns.State, dict[str, jax.Array]]:
        def block(x: ns.State, _: None) -> tuple[ns.State, dict[str, jax.Array]]:
            obs = observe(x)
            x = lax.fori_loop(
                0, spec.every, lambda _, y: solver.step(y, ns.step_key(run_key, y)), x
            )
            return x, obs

        return lax.scan(block, s, None, length=count_marker.shape[0])

    done = 0
    while done < start:
        count = min(steps_per_call, start - done)
        state = burn(state, jnp.asarray(count))
        done += count
        if progress:
            progress(count)
    pieces = []
    remaining = num_steps // spec.every
    per_call = max(1, steps_per_call // spec.every)
    while remaining:
        count = min(per_call, remaining)
        state, obs = blocks(state, jnp.zeros((count,)))
        pieces.append(jax.device_get(obs))
        remaining -= count
        if progress:
            progress(count * spec.every)
    pieces.append(jax.device_get(jax.tree.map(lambda a: a[None], jax.jit(observe)(state))))
    fields = {n: np.concatenate([p[n] for p in pieces]) for n in names}
    for name, value in fields.items():
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(
                f"the reference DNS produced non-finite '{name}' (physics.dt={params.dt}, "
                f"data.fine_size={data_spec.fine_size})"
            )
    return Reference(fields, start, spec.every, np.asarray(run_key))


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A coupled ensemble run: snapshots `[M, S, n, n]` and the first non-finite step `[M]`."""

    snapshots: np.ndarray
    first_nonfinite_step: np.ndarray
    seconds: float


def coupled_run(
    step: coupled.CoupledStep,
    reference: Reference,
    spec: OnlineSpec,
    num_steps: int,
    save_every: int,
    context_names: Sequence[str] = (),
    mesh: Mesh | None = None,
    partial_path: str | Path | None = None,
    fingerprint: str = "",
    progress: Callable[[int], None] | None = None,
    snapshots_per_call: int = 10,
    key: Mapping[str, Any] | None = None,
) -> RunResult:
    """An ensemble of `spec.ensemble_size` coupled runs from the reference's coarse state at
    t_start (module docstring), in chunks of `snapshots_per_call` snapshots.

    If `partial_path` is given, the carry and the snapshots so far are saved there atomically after
    every chunk, and a run restarted with the same `fingerprint` resumes from them (the result is
    the same as an uninterrupted run: every step is keyed by its step counter). `key`, what the
    fingerprint digests, is saved beside it so a caller can say what made a partial run stale.
    """
    solver = step.solver
    members = spec.ensemble_size
    omega0 = jnp.asarray(reference.fields["omega"][0])
    state = solver.initial_state(omega0, step=reference.start_step)
    carry = coupled.initial_carry(solver, state)
    carry = jax.tree.map(lambda a: jnp.broadcast_to(a, (members, *a.shape)), carry)
    run_key = jnp.asarray(reference.run_key, jnp.uint32)
    snaps = [
        np.broadcast_to(np.asarray(reference.fields["omega"][0]), (members, *omega0.shape))[:, None]
    ]
    bad = np.full((members,), -1, np.int64)
    done = 0
    if partial_path is not None:
        resumed = _load_partial(partial_path, fingerprint, carry)
        if resumed is not None:
            carry, snaps, bad, done = resumed
            if progress and done:
                progress(done)
    chunk = save_every * snapshots_per_call
    start_time = time.perf_counter()
    while done < num_steps:
        count = min(chunk, num_steps - done)
        context = reference.context(context_names, done, count)
        carry, block, report = coupled.ensemble_rollout(
            step, carry, run_key, count, save_every, context or None, mesh
        )
        block = np.asarray(jax.device_get(block))
        snaps.append(block[:, 1:])
        new_bad = np.asarray(jax.device_get(report["first_nonfinite_step"]))
        bad = np.where(bad >= 0, bad, new_bad)
        done += count
        if partial_path is not None and done < num_steps:
            _save_partial(partial_path, fingerprint, carry, snaps, bad, done, key)
        if progress:
            progress(count)
    seconds = time.perf_counter() - start_time
    return RunResult(np.concatenate(snaps, axis=1), bad, seconds)


def _save_partial(
    path: str | Path,
    fingerprint: str,
    carry: Any,
    snaps: list[np.ndarray],
    bad: np.ndarray,
    done: int,
    key: Mapping[str, Any] | None = None,
) -> None:
    leaves = jax.tree.leaves(jax.device_get(carry))
    arrays = {f"carry_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    meta: dict[str, Any] = {"fingerprint": fingerprint, "done": done}
    if key is not None:
        meta["key"] = key
    snapshots = np.concatenate(snaps, axis=1)
    atomic.save_tagged_npz(path, meta, snapshots=snapshots, bad=bad, **arrays)


def _load_partial(path: str | Path, fingerprint: str, carry: Any) -> tuple | None:
    """(carry, [snapshots], bad, steps done) of a partial run with `fingerprint` whose carry has
    the shapes of `carry`, else None."""
    loaded = atomic.load_tagged_npz(path, fingerprint)
    if loaded is None:
        return None
    meta, arrays = loaded
    leaves, treedef = jax.tree.flatten(carry)
    stored = [arrays.get(f"carry_{i}") for i in range(len(leaves))]
    if any(
        s is None or s.shape != tuple(leaf.shape) for s, leaf in zip(stored, leaves, strict=True)
    ) or not {"snapshots", "bad"} <= set(arrays):
        return None
    restored = jax.tree.unflatten(
        treedef, [jnp.asarray(s, leaf.dtype) for s, leaf in zip(stored, leaves, strict=True)]
    )
    return restored, [arrays["snapshots"]], arrays["bad"], int(meta["done"])
