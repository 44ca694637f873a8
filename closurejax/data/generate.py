"""Closure datasets from batched DNS (arXiv 2408.02965, data; `experiments/generate_data.py`).

For each trajectory i (key fold_in(PRNGKey(seed), i)): a Gaussian-random-field vorticity on the
fine grid, `t_burn_in` of spin-up, then a snapshot every `snapshot_interval` up to `t_end`. At each
snapshot the fine state and the noise of the step that starts from it give the closure target,
then everything is coarse-grained:

* G / H (paper A/B): ω and the target on the fine grid, subsampled with stride fine/coarse (the
  papers' point subsampling; or spectral truncation, `coarse_method`).
* Π (LES): ω̄ = F(ω) and Π = F(u·∇ω) − ū·∇ω̄ on the fine grid, then coarse-grained; Smagorinsky's
  estimate of Π from ω̄ on the coarse grid is stored as a physics-based condition.

Sparse measurements of the coarse target: the lattice of every `sparse_stride`-th point and both
encodings (bicubic interpolation; zero-fill + box smoothing + rescale). Trajectories are batched
with vmap and run in chunks; the store makes generation resumable chunk by chunk.

Arrays per trajectory: `omega`, `target`, `sparse_interpolated`, `sparse_smoothed` `[T, n, n]`,
`sparse_lattice` `[T, n/s, n/s]`, `smagorinsky` `[T, n, n]` (Π only), with T snapshots.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from closurejax import interrupts, locking
from closurejax.config_section import as_dict, from_section, invalid
from closurejax.data import sparse, store
from closurejax.data.writer import DatasetWriter
from closurejax.physics import closures, filters
from closurejax.physics import initial_conditions as ic
from closurejax.physics import navier_stokes as ns
from closurejax.physics.grid import SpectralGrid

TARGETS = ("G", "H", "Pi")


def _bad(field: str, value: Any, allowed: str) -> ValueError:
    return invalid("data", field, value, allowed)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The `data` section of a study config, validated (see closurejax.config)."""

    fine_size: int = 256
    coarse_size: int = 64
    stepper: str = "semi_implicit"
    closure: str = "H"
    coarse_method: str = "subsample"
    filter_name: str = "box"
    filter_cutoff: int = 16
    filter_width: float = 1.0 / 32
    filter_width_points: int = 16
    smagorinsky_cs: float = 0.16
    num_trajectories: int = 100
    num_test: int = 5
    t_burn_in: float = 20.0
    t_end: float = 40.0
    snapshot_interval: float = 0.1
    sparse_stride: int = 4
    sparse_kernel: int = 7
    trajectories_per_chunk: int = 4
    zero_shot_sizes: tuple[int, ...] = (128, 256)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "zero_shot_sizes", tuple(int(s) for s in self.zero_shot_sizes))
        for name in ("fine_size", "coarse_size", "num_trajectories", "trajectories_per_chunk"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise _bad(name, value, "a positive integer")
        if self.fine_size % self.coarse_size:
            raise _bad(
                "fine_size",
                self.fine_size,
                f"a multiple of data.coarse_size={self.coarse_size} (the coarse grid must be a "
                "subset of the fine grid)",
            )
        if self.coarse_size < 8 or self.coarse_size % 2:
            raise _bad("coarse_size", self.coarse_size, "an even integer ≥ 8")
        if self.stepper not in ns.STEPPERS:
            raise _bad("stepper", self.stepper, str(ns.STEPPERS))
        if self.closure not in TARGETS:
            raise _bad("closure", self.closure, str(TARGETS))
        if self.closure == "G" and self.stepper != "semi_implicit":
            raise _bad("stepper", self.stepper, "'semi_implicit' for the G target (paper A)")
        if self.coarse_method not in filters.COARSE_GRAINING_METHODS:
            raise _bad("coarse_method", self.coarse_method, str(filters.COARSE_GRAINING_METHODS))
        if self.filter_name not in filters.FILTERS:
            raise _bad("filter_name", self.filter_name, str(filters.FILTERS))
        if not 0 <= self.num_test < self.num_trajectories:
            raise _bad("num_test", self.num_test, f"0 ≤ num_test < {self.num_trajectories}")
        if not 0 <= self.t_burn_in < self.t_end:
            raise _bad("t_end", self.t_end, f"> t_burn_in={self.t_burn_in} ≥ 0")
        if self.snapshot_interval <= 0:
            raise _bad("snapshot_interval", self.snapshot_interval, "> 0")
        if int(self.sparse_stride) != self.sparse_stride or self.sparse_stride < 1:
            raise _bad("sparse_stride", self.sparse_stride, f"a divisor of {self.coarse_size}")
        if self.coarse_size % self.sparse_stride:
            raise _bad("sparse_stride", self.sparse_stride, f"a divisor of {self.coarse_size}")
        if self.sparse_kernel % 2 == 0 or not 1 <= self.sparse_kernel <= self.coarse_size:
            raise _bad("sparse_kernel", self.sparse_kernel, "an odd integer in [1, coarse_size]")
        for size in self.zero_shot_sizes:
            if size < 1 or size % self.coarse_size or self.fine_size % size:
                raise _bad(
                    "zero_shot_sizes",
                    self.zero_shot_sizes,
                    f"sizes that are multiples of {self.coarse_size} and divide {self.fine_size}",
                )
        if self.dtype not in ("float32", "float64"):
            raise _bad("dtype", self.dtype, "'float32' or 'float64'")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DataSpec:
        return from_section(cls, config, "data")

    @property
    def filter_params(self) -> dict[str, Any]:
        return {
            "spectral": {"cutoff": self.filter_cutoff},
            "gaussian": {"width": self.filter_width},
            "box": {"width_points": self.filter_width_points},
        }[self.filter_name]

    def schedule(self, dt: float) -> tuple[int, int, int]:
        """(burn-in steps, steps per snapshot, number of snapshots), checked to be whole."""

        def whole(name: str, value: float) -> int:
            steps = round(value / dt)
            if steps < 1 or not math.isclose(steps * dt, value, rel_tol=1e-9, abs_tol=1e-12):
                raise _bad(name, value, f"a positive multiple of physics.dt={dt}")
            return steps

        burn = 0 if self.t_burn_in == 0 else whole("t_burn_in", self.t_burn_in)
        every = whole("snapshot_interval", self.snapshot_interval)
        span = whole("t_end", self.t_end - self.t_burn_in)
        if span % every:
            raise _bad("t_end", self.t_end, "t_burn_in + a whole number of snapshot intervals")
        return burn, every, span // every + 1

    def test_trajectories(self) -> list[int]:
        """The test split: the last `num_test` trajectory indices."""
        return list(range(self.num_trajectories - self.num_test, self.num_trajectories))


@dataclasses.dataclass(frozen=True)
class Study:
    """What generation needs from a config: seed, physics, initial condition and data spec."""

    seed: int
    params: ns.FlowParams
    grf_alpha: float
    grf_tau: float
    spec: DataSpec

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Study:
        for section in ("physics", "initial_condition", "data"):
            if section not in config:
                raise ValueError(f"config has no '{section}' section")
        grf = config["initial_condition"]
        return cls(
            seed=int(config["seed"]),
            params=ns.FlowParams.from_config(config["physics"]),
            grf_alpha=float(grf["alpha"]),
            grf_tau=float(grf["tau"]),
            spec=DataSpec.from_config(config["data"]),
        )

    @functools.cached_property
    def solver(self) -> ns.Solver:
        return ns.make_solver(self.params, self.spec.fine_size, self.spec.stepper)

    def initial_vorticity(self, indices: Sequence[int]) -> jax.Array:
        """Fine-grid initial vorticity of the given trajectories `[len(indices), n, n]`."""
        ic_keys, _ = trajectory_keys(self.seed, indices)
        dtype = jnp.float64 if self.spec.dtype == "float64" else jnp.float32
        n, p = self.spec.fine_size, self.params
        return jax.vmap(
            lambda k: ic.gaussian_random_field(k, n, self.grf_alpha, self.grf_tau, p.length, dtype)
        )(ic_keys)


def observer(study: Study, sizes: Sequence[int]) -> Callable[[ns.State, jax.Array], dict]:
    """observe(fine state, step key) → coarse fields at each size (single trajectory).

    For the first size the names are plain (`omega`, `target`, sparse fields); for further sizes
    they carry the size as a suffix (`omega_128`, `target_128`): the zero-shot resolutions.
    """
    spec, solver = study.spec, study.solver
    grid = solver.grid
    dtype = jnp.dtype(spec.dtype)

    def observe(state: ns.State, key: jax.Array) -> dict[str, jax.Array]:
        out: dict[str, jax.Array] = {}
        omega = solver.vorticity(state)
        if spec.closure == "Pi":
            target = closures.subgrid_term(omega, grid, spec.filter_name, **spec.filter_params)
            omega = filters.apply_filter(omega, spec.filter_name, **spec.filter_params)
        else:
            target = closures.exact_closure(solver, state, key, spec.closure)
        for i, size in enumerate(sizes):
            suffix = "" if i == 0 else f"_{size}"
            w = filters.coarse_grain(omega, size, spec.coarse_method)
            t = filters.coarse_grain(target, size, spec.coarse_method)
            out["omega" + suffix] = w.astype(dtype)
            out["target" + suffix] = t.astype(dtype)
            stride = spec.sparse_stride * size // spec.coarse_size  # same physical lattice
            kernel = spec.sparse_kernel * size // spec.coarse_size
            kernel += 1 - kernel % 2  # odd
            lattice = sparse.lattice(t, stride)
            out["sparse_lattice" + suffix] = lattice.astype(dtype)
            out["sparse_interpolated" + suffix] = sparse.encode(t, stride, "interpolated").astype(
                dtype
            )
            out["sparse_smoothed" + suffix] = sparse.encode(
                t, stride, "smoothed", kernel_size=kernel
            ).astype(dtype)
            if spec.closure == "Pi":
                coarse_grid = SpectralGrid(size, study.params.length)
                out["smagorinsky" + suffix] = closures.smagorinsky(
                    w, coarse_grid, spec.smagorinsky_cs
                ).astype(dtype)
        return out

    return observe


def array_specs(study: Study, sizes: Sequence[int]) -> dict[str, store.ArraySpec]:
    """Per-trajectory shapes and dtypes of `observer(study, sizes)`'s output over a rollout."""
    _, _, num_snapshots = study.spec.schedule(study.params.dt)
    observe = observer(study, sizes)
    n = study.spec.fine_size
    abstract_state = ns.State(
        jax.ShapeDtypeStruct((n, n // 2 + 1), jnp.complex64), jax.ShapeDtypeStruct((), jnp.int32)
    )
    shapes = jax.eval_shape(observe, abstract_state, jax.ShapeDtypeStruct((2,), jnp.uint32))
    return {
        name: store.ArraySpec((num_snapshots, *s.shape), str(s.dtype)) for name, s in shapes.items()
    }


def trajectory_keys(seed: int, indices: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """(initial-condition keys, run keys) `[len(indices), 2]` of the given trajectories."""
    base = jax.random.PRNGKey(seed)
    keys = jnp.stack([jax.random.fold_in(base, int(i)) for i in indices])
    return jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys), jax.vmap(
        lambda k: jax.random.fold_in(k, 1)
    )(keys)


def simulate_chunk(
    study: Study,
    indices: Sequence[int],
    sizes: Sequence[int],
    progress: Callable[[int], None] | None = None,
    snapshots_per_call: int = 10,
) -> dict[str, np.ndarray]:
    """Runs the trajectories `indices` (vmapped) and returns their coarse fields.

    The rollout is cut into calls of `snapshots_per_call` snapshots so that `progress(steps)` can
    report; since step s is keyed by fold_in(run key, s), the cut does not change the result.
    Raises FloatingPointError naming the trajectory if any field becomes non-finite.
    """
    spec, params, solver = study.spec, study.params, study.solver
    burn, every, num_snapshots = spec.schedule(params.dt)
    _, run_keys = trajectory_keys(study.seed, indices)
    states = solver.initial_state(study.initial_vorticity(indices))
    observe = observer(study, sizes)
    # on a CPU the trajectories advance in cache-sized slices (ns.members_per_slice)
    slice_size = ns.members_per_slice(solver.size, jnp.real(states.omega_hat).dtype)

    def advance(s: ns.State, k: jax.Array, count: int) -> ns.State:
        return ns.map_members(
            lambda s1, k1: ns.advance(solver.step, s1, k1, count), slice_size, s, k
        )

    burn_fn = jax.jit(advance, static_argnums=2)

    for chunk in _split(burn, every * snapshots_per_call):
        states = burn_fn(states, run_keys, chunk)
        if progress:
            progress(chunk)

    def segment(s: ns.State, k: jax.Array, count: int) -> tuple[ns.State, Any]:
        def member(s1: ns.State, k1: jax.Array) -> tuple[ns.State, Any]:
            return ns.rollout(solver.step, s1, k1, count, every, observe)

        return ns.map_members(member, slice_size, s, k)

    segment_fn = jax.jit(segment, static_argnums=2)
    pieces = []
    remaining = num_snapshots
    while remaining:
        count = min(snapshots_per_call, remaining)
        # rollout observes, then steps count−1 blocks; one more block joins it to the next segment
        final, obs = segment_fn(states, run_keys, count)
        pieces.append(jax.device_get(obs))
        remaining -= count
        if remaining:
            states = burn_fn(final, run_keys, every)
        if progress:
            progress((count if remaining else count - 1) * every)
    arrays = {name: np.concatenate([p[name] for p in pieces], axis=1) for name in pieces[0]}
    for name, value in arrays.items():
        bad = ~np.isfinite(value).reshape(len(indices), -1).all(axis=1)
        if bad.any():
            raise FloatingPointError(
                f"trajectory {int(np.asarray(indices)[bad][0])} produced non-finite '{name}': the "
                f"DNS blew up (physics.dt={params.dt} may be too large for "
                f"data.fine_size={spec.fine_size})"
            )
    return arrays


def _split(total: int, piece: int) -> list[int]:
    return [piece] * (total // piece) + ([total % piece] if total % piece else [])


DATA_SECTIONS = ("seed", "physics", "initial_condition", "data")


def dataset_config(config: Mapping[str, Any], kind: str = "dataset") -> dict[str, Any]:
    """The part of a study config that defines a dataset (what its manifest records and checks):
    seed, physics, initial_condition and data, plus which dataset of the study it is. Model and
    training settings are left out, so changing them does not invalidate the data."""
    config_dict = as_dict(config)
    missing = [s for s in DATA_SECTIONS if s not in config_dict]
    if missing:
        raise ValueError(f"config has no {missing} section(s)")
    spec = DataSpec.from_config(config_dict["data"])
    trajectories = (
        list(range(spec.num_trajectories)) if kind == "dataset" else spec.test_trajectories()
    )
    return {
        **{s: config_dict[s] for s in DATA_SECTIONS},
        "_dataset": {"kind": kind, "trajectories": trajectories},
    }


def generate(
    config: Mapping[str, Any],
    workdir: str | Path,
    *,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Generates (or resumes) the dataset of `config` under `workdir`.

    Writes `<workdir>/dataset` (all trajectories at the coarse size, train/test split, train-only
    normalisation statistics) and, if `data.zero_shot_sizes` is non-empty, `<workdir>/zero_shot`
    (the test trajectories, identical seeds, at the coarse and each zero-shot size). A workdir that
    already holds a dataset from a different config is refused and left untouched. One process
    generates in a workdir at a time: a second is refused (`locking.FolderLockedError`, naming
    the holder). Ctrl-C keeps the chunks written; its KeyboardInterrupt says where it stopped
    (rerunning resumes there). Returns the dataset paths.
    """
    config_dict = as_dict(config)
    study = Study.from_config(config_dict)
    spec = study.spec
    workdir = Path(workdir).resolve()
    jobs = [("dataset", list(range(spec.num_trajectories)), (spec.coarse_size,))]
    if spec.zero_shot_sizes and spec.num_test:
        jobs.append(
            ("zero_shot", spec.test_trajectories(), (spec.coarse_size, *spec.zero_shot_sizes))
        )
    # validate every initial state (finite, within the CFL bound) and refuse a mismatched
    # workdir before anything is written or run
    for first in range(0, spec.num_trajectories, spec.trajectories_per_chunk):
        last = min(first + spec.trajectories_per_chunk, spec.num_trajectories)
        study.solver.initial_state(study.initial_vorticity(range(first, last)))
    with locking.hold(workdir, "generate_data"):  # one generating process per workdir
        return _write_jobs(study, config_dict, jobs, workdir, show_progress, log)


def _stopped(name: str, writer: DatasetWriter, chunk: int) -> str:
    """Where an interrupted job stopped: the chunk it was in, the chunks written and kept."""
    written = writer.num_chunks - len(writer.pending_chunks())
    return (
        f"[{name}] stopped in chunk {chunk + 1} of {writer.num_chunks}; {written} of "
        f"{writer.num_chunks} chunks written and kept in {writer.path}"
    )


def _write_jobs(
    study: Study,
    config_dict: dict[str, Any],
    jobs: list[tuple[str, list[int], tuple[int, ...]]],
    workdir: Path,
    show_progress: bool,
    log: Callable[[str], None],
) -> dict[str, Path]:
    """`generate`'s writing part, under the workdir's lock: create or resume each job's dataset
    (all refusals before anything runs), then run and finalise the pending ones."""
    spec = study.spec
    burn, every, num_snapshots = spec.schedule(study.params.dt)
    steps_per_traj = burn + every * (num_snapshots - 1)
    writers = []
    for name, indices, sizes in jobs:
        job_config = dataset_config(config_dict, name)
        writers.append(
            DatasetWriter.create_or_resume(
                workdir / name,
                job_config,
                array_specs(study, sizes),
                num_trajectories=len(indices),
                trajectories_per_chunk=spec.trajectories_per_chunk,
            )
        )
    paths: dict[str, Path] = {}
    for (name, indices, sizes), writer in zip(jobs, writers, strict=True):
        paths[name] = workdir / name
        if writer.complete:
            broken, regenerate = writer.reopen_broken()
            if not broken:
                where = workdir / name
                log(f"[{name}] already complete at {where} (checksums verified); nothing to do")
                continue
            log(
                f"[{name}] {', '.join(broken)} corrupt or missing in {workdir / name} (checksum "
                f"mismatch): repairing: {writer.num_chunks - len(regenerate)} chunk(s) rebuilt "
                f"from the intact files, {len(regenerate)} to regenerate"
            )
        pending = writer.pending_chunks()
        total_steps = sum(len(writer.chunk_trajectories(i)) for i in pending) * steps_per_traj
        log(f"[{name}] {len(pending)} chunk(s) to run, sizes {sizes}, {num_snapshots} snapshots")
        start = time.time()
        with (
            interrupts.catching(),
            tqdm(
                total=total_steps,
                unit="step",
                desc=name,
                disable=not show_progress,
                unit_scale=True,
            ) as bar,
        ):
            for chunk in pending:
                local = list(writer.chunk_trajectories(chunk))
                per = len(local)
                try:
                    interrupts.check()
                    arrays = simulate_chunk(
                        study,
                        [indices[i] for i in local],
                        sizes,
                        progress=interrupts.checked(lambda s, p=per: bar.update(s * p)),
                    )
                    writer.write_chunk(chunk, arrays)
                except KeyboardInterrupt:
                    raise KeyboardInterrupt(_stopped(name, writer, chunk)) from None
        test_local = [indices.index(i) for i in spec.test_trajectories() if i in indices]
        if name == "zero_shot":
            test_local = list(range(len(indices)))
        writer.finalize(test_local)
        log(f"[{name}] done in {time.time() - start:.1f} s → {workdir / name}")
    return paths
