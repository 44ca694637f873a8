"""Benchmark records, timing, the FFT floor, and the benchmark groups run by `make bench`.

Every benchmark (solver, samplers, latent model, coupled step) produces a list of `BenchRecord`
and appends it to one JSON file (`bench.json`: a list of records, sorted by name) with
`write_records`, which replaces only the rows of the groups being re-run, so
`make bench ONLY=solver` refreshes the solver rows and keeps the others. Record names are
`group/…/metric`, e.g. `solver/cn_rk4/n256/b16/floor_ratio`.

A group is a function `group(quick, configs) -> list[BenchRecord]` (`Group`). The study configs a
group measures are passed in by its caller (`Configs`: by name, e.g. "paper_b"; each module's
`CONFIGS` names those of its groups; experiments/benchmark.py builds them from
`experiments/configs/<name>.py`): the library does not import `experiments/`.

Cost model ("know the floor"): a pseudo-spectral solver step cannot be faster than the 2-D FFTs
and random draws its equation needs (`Solver.step_cost` counts them). `fft_floor` times that work
(with the least glue that keeps XLA from dropping or merging it), on arrays of the same shape, in
the same `lax.scan` structure, and `solver_benchmarks` reports step time / floor time
(`floor_ratio`): 1 means the step costs only its counted work; the target for the production size
n = 256 is ≤ 1.3.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from closurejax import atomic

if TYPE_CHECKING:
    from closurejax.physics.navier_stokes import Solver

__all__ = [
    "BenchRecord",
    "Configs",
    "Group",
    "study_config",
    "device_description",
    "record",
    "time_fn",
    "load_records",
    "write_records",
    "format_table",
    "fft_floor",
    "solver_benchmarks",
    "FLOOR_RATIO_TARGET",
    "CONFIGS",
    "GROUPS",
]

FLOOR_RATIO_TARGET = 1.3
"""Target of `solver/*/n256/*/floor_ratio`: a DNS step within 1.3× of its counted work."""

Configs = Mapping[str, Any]
"""The study configs a benchmark group measures, by name (the study's file name in
experiments/configs, e.g. "paper_b"): `ml_collections.ConfigDict`s or nested mappings."""

Group = Callable[[bool, Configs], "list[BenchRecord]"]
"""A benchmark group: `group(quick, configs)`; `quick`: tiny sizes for tests."""


@dataclasses.dataclass(frozen=True)
class BenchRecord:
    """One measured number.

    Attributes:
      name: `group/…/metric`, unique within a benchmark file; the leading `group/` decides which
        rows a re-run of that group replaces.
      value: the measurement (NaN if it could not be measured; stored as JSON null then).
      unit: e.g. "steps/s", "s", "ratio".
      target: the value to meet, or None when there is none.
      meets_target: whether `value` meets `target` (None when there is no target).
      device: `device_description()` of the machine that measured it.
      config: what was measured (sizes, batch, dtype, …); JSON-serialisable.
    """

    name: str
    value: float
    unit: str
    target: float | None
    meets_target: bool | None
    device: str
    config: dict

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (non-finite values become null: JSON has no NaN)."""
        value = float(self.value)
        return {
            "name": self.name,
            "value": value if math.isfinite(value) else None,
            "unit": self.unit,
            "target": None if self.target is None else float(self.target),
            "meets_target": self.meets_target,
            "device": self.device,
            "config": dict(self.config),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BenchRecord:
        """Inverse of `to_json`; raises KeyError/TypeError on a malformed record."""
        value = obj["value"]
        target = obj["target"]
        return cls(
            name=str(obj["name"]),
            value=math.nan if value is None else float(value),
            unit=str(obj["unit"]),
            target=None if target is None else float(target),
            meets_target=obj["meets_target"],
            device=str(obj["device"]),
            config=dict(obj["config"]),
        )


def study_config(configs: Configs, name: str) -> dict[str, Any]:
    """A deep plain-dict copy of the study config `name` in `configs` (a group may change it);
    `ValueError` naming it and the given ones when it is absent."""
    if name not in configs:
        raise ValueError(
            f"the benchmark needs the study config {name!r}; given: {sorted(configs)} (the "
            "caller builds it, e.g. experiments/benchmark.py from experiments/configs)"
        )
    config = configs[name]
    return config.to_dict() if hasattr(config, "to_dict") else copy.deepcopy(dict(config))


def device_description() -> str:
    """E.g. "NVIDIA H100 80GB HBM3 (gpu ×1)" or "cpu (cpu ×1)": kind, platform, device count."""
    devices = jax.devices()
    return f"{devices[0].device_kind} ({devices[0].platform} ×{len(devices)})"


def record(
    name: str,
    value: float,
    unit: str,
    *,
    target: float | None = None,
    lower_is_better: bool = True,
    config: dict[str, Any],
) -> BenchRecord:
    """A `BenchRecord` on this machine's device, with `meets_target` filled in.

    `meets_target` is `value <= target` when `lower_is_better`, else `value >= target`; None
    without a target; False for a NaN value.
    """
    value = float(value)
    if target is None:
        meets = None
    elif math.isnan(value):
        meets = False
    else:
        meets = value <= target if lower_is_better else value >= target
    return BenchRecord(
        name=name,
        value=value,
        unit=unit,
        target=None if target is None else float(target),
        meets_target=meets,
        device=device_description(),
        config=dict(config),
    )


def time_fn(fn: Callable[..., Any], *args: Any, warmup: int = 1, repeats: int = 5) -> dict:
    """Wall-clock seconds of `fn(*args)`, blocking on every output array.

    The first `warmup` calls (which include jit compilation) are made and discarded; then `repeats`
    calls are timed one by one. Returns `{"min", "median", "mean"}` in seconds.
    """
    if warmup < 0:
        raise ValueError(f"time_fn warmup={warmup} must be ≥ 0")
    if repeats < 1:
        raise ValueError(f"time_fn repeats={repeats} must be ≥ 1")
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return {
        "min": min(times),
        "median": statistics.median(times),
        "mean": statistics.fmean(times),
    }


# --- the benchmark file ---------------------------------------------------------------------


def load_records(path: str | os.PathLike) -> list[BenchRecord]:
    """Records of an existing benchmark file (a JSON list of `BenchRecord.to_json()` dicts).

    Raises ValueError naming the file when it is not such a list.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"benchmark file {path} is not valid JSON ({e}); move or delete it, it was not "
            "overwritten"
        ) from e
    if not isinstance(obj, list):
        raise ValueError(
            f"benchmark file {path} holds a JSON {type(obj).__name__}, expected a list of "
            "records; move or delete it, it was not overwritten"
        )
    records = []
    for i, item in enumerate(obj):
        try:
            if not isinstance(item, dict):
                raise TypeError(f"a {type(item).__name__}, not an object")
            records.append(BenchRecord.from_json(item))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"benchmark file {path}: entry {i} is not a benchmark record ({e!r}); move or "
                "delete the file, it was not overwritten"
            ) from e
    return records


def write_records(
    path: str | os.PathLike,
    records: Iterable[BenchRecord],
    replace_prefix: str | tuple[str, ...] | None,
) -> list[BenchRecord]:
    """Merges `records` into the benchmark file at `path` and writes it atomically.

    Existing records whose name starts with `replace_prefix` (a string or a tuple of them: the
    groups being re-run, e.g. "solver/") are dropped, as are existing records with the same name
    as a new one; all other existing records are kept. With `replace_prefix=None` only same-name
    records are replaced. A file that is not a list of records raises ValueError and is left as it
    is. Returns the records written, sorted by name.
    """
    path = Path(path)
    records = list(records)
    names = [r.name for r in records]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate benchmark record names: {duplicates}")
    if replace_prefix is not None:
        outside = [n for n in names if not n.startswith(replace_prefix)]
        if outside:
            raise ValueError(
                f"records {outside} do not start with replace_prefix={replace_prefix!r}; "
                "they would leave stale rows of their own group behind"
            )
    existing = load_records(path) if path.exists() else []
    new_names = set(names)
    kept = [
        r
        for r in existing
        if r.name not in new_names
        and (replace_prefix is None or not r.name.startswith(replace_prefix))
    ]
    merged = sorted(kept + records, key=lambda r: r.name)
    atomic.write_json(path, [r.to_json() for r in merged])
    return merged


def _format_number(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.4g}"


def format_table(records: Sequence[BenchRecord]) -> str:
    """An aligned text table: name, value, unit, target, meets (✓/✗/–), device."""
    header = ("name", "value", "unit", "target", "meets", "device")
    rows = [
        (
            r.name,
            _format_number(r.value),
            r.unit,
            _format_number(r.target),
            {True: "✓", False: "✗", None: "–"}[r.meets_target],
            r.device,
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 3}  # numbers are right-aligned

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


# --- the FFT floor --------------------------------------------------------------------------


def _schedule(n_forward: int, n_inverse: int, stack: bool) -> list[tuple[bool, int]]:
    """(forward?, how many) calls: the transforms spread evenly, forwards first.

    With `stack`, each run of consecutive same-direction transforms becomes one call.
    """
    total = n_forward + n_inverse
    # Forward j sits at the start of its share of the sequence (Bresenham-style).
    forward_at = {j * total // n_forward for j in range(n_forward)} if n_forward else set()
    calls: list[tuple[bool, int]] = []
    for i in range(total):
        forward = i in forward_at
        if stack and calls and calls[-1][0] == forward:
            calls[-1] = (forward, calls[-1][1] + 1)
        else:
            calls.append((forward, 1))
    return calls


def make_fft_chain(
    shape: Sequence[int],
    n_forward: int,
    n_inverse: int,
    steps: int = 1,
    stack: bool = True,
    normals: int = 0,
) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """The jitted function that `fft_floor` times; see there.

    Returns `f(r, c) -> (r, c)` with `r` real `shape = [..., n, n]` and `c` its rfft2 layout
    `[..., n, n//2+1]` complex, running `steps` iterations of a `lax.scan`, each doing `n_forward`
    rfft2 and `n_inverse` irfft2 over the last two axes (runs of same-direction transforms as one
    call over a stacked axis `[..., k, n, n]` when `stack`) and drawing `normals` standard normals
    per field (`[..., normals]` from the iteration's key, JAX's default generator, as the solver
    draws its noise), averaged into a carried `[..., normals]` array as a transform's output is
    averaged into the carried field: every piece of work lands in memory once.
    """
    n = tuple(shape[-2:])
    calls = _schedule(n_forward, n_inverse, stack) if n_forward + n_inverse else []
    # Distinct input scales a_i = 1 + 1e-3·(i − mean), one per transform of an iteration.
    total = n_forward + n_inverse
    scales = [1.0 + 1e-3 * (i - (total - 1) / 2) for i in range(total)]
    call_scales, first = [], 0
    for _, k in calls:
        call_scales.append(scales[first : first + k])
        first += k
    key = jax.random.key(0)

    def scaled(x: jax.Array, a: list[float]) -> jax.Array:
        """a[0]·x, or the a_j·x stacked on axis −3 for several scales."""
        if len(a) == 1:
            return a[0] * x
        return jnp.asarray(a, x.real.dtype)[:, None, None] * x[..., None, :, :]

    def merged(y: jax.Array) -> jax.Array:
        """Mean over the stacked axis −3, as a sum of slices: XLA:CPU lowers `jnp.mean` over a
        middle axis to a reduction ≈ 25× slower than this elementwise fusion."""
        if y.ndim == len(shape):
            return y
        k = y.shape[-3]
        return sum(y[..., j, :, :] for j in range(k)) / k

    def one_step(carry: tuple[jax.Array, ...], i: jax.Array) -> tuple[Any, None]:
        r, c, d = carry
        for (forward, _), a in zip(calls, call_scales, strict=True):
            # Transform i reads a_i × the latest value of one array and is averaged into the
            # other. The distinct a_i keep any two transforms from reading the same value (no
            # CSE; a sign flip would not do: XLA folds −(−c) to c), every output reaches the
            # result (no DCE), and, since irfft2 ∘ rfft2 = id and the a_i average to 1, the
            # values stay O(1) over thousands of iterations. Transforms of one run read the same
            # array and write the other, so they are independent and may share a call.
            if forward:
                c = 0.5 * (c + merged(jnp.fft.rfft2(scaled(r, a), axes=(-2, -1))))
            else:
                r = 0.5 * (r + merged(jnp.fft.irfft2(scaled(c, a), s=n, axes=(-2, -1))))
        if normals:
            d = 0.5 * (d + jax.random.normal(jax.random.fold_in(key, i), d.shape, d.dtype))
        return (r, c, d), None

    def chain(r: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
        d = jnp.zeros((*shape[:-2], normals), r.dtype)
        (r, c, d), _ = lax.scan(one_step, (r, c, d), jnp.arange(steps))
        if normals:  # the draws reach the result (no DCE)
            r = r + 1e-9 * jnp.sum(d, axis=-1)[..., None, None]
        return r, c

    return jax.jit(chain)


def fft_floor(
    shape: Sequence[int],
    count: int | None = None,
    dtype: Any = jnp.float32,
    *,
    n_forward: int | None = None,
    n_inverse: int | None = None,
    normals: int = 0,
    steps: int = 1,
    stack: bool = True,
    warmup: int = 1,
    repeats: int = 5,
    seed: int = 0,
) -> float:
    """Median seconds of `steps` × (`count` 2-D real FFTs + `normals` draws) on `[..., n, n]`
    arrays: a step's floor.

    What it measures: one jitted call running a `lax.scan` of `steps` iterations, each doing
    `n_forward` `rfft2` (`[..., n, n]` real → `[..., n, n//2+1]` complex) and `n_inverse`
    `irfft2` (back), all over the last two axes of arrays of `shape` (leading axes are batch:
    the same batching as a vmapped solver step), interleaved evenly, and drawing `normals`
    standard normal numbers per field; by default half the `count` transforms are forward (the
    extra one when `count` is odd). With `stack` (the default), each run of consecutive
    same-direction transforms is done as one batched call over a stacked axis, as an efficient
    step does (the solver stacks u, v, ∂ω/∂x, ∂ω/∂y into one irfft2), so the floor is the
    cheapest arrangement of those transforms.

    To keep XLA from merging identical transforms or dropping unused ones, each transform reads
    the latest state scaled by its own constant and its output is averaged into the carried
    state (the draws are averaged into a carried array of their own: a drawn number is stored at
    least once, as a solver stores the noise it adds); so besides the FFTs and draws the time
    includes a fused elementwise scale and average per call (memory-bound, a pass or two over the
    arrays) and the loop overhead, which a solver step pays as well (it forms spectral
    derivatives and sums terms the same way). Whatever else a pseudo-spectral step that does
    this work computes can only add to this time.

    Args:
      shape: real array shape `[..., n, n]`.
      count: transforms per scan iteration (n_forward + n_inverse); may be omitted when both of
        those are given.
      dtype: real dtype (float32 → complex64 transforms; float64 needs jax_enable_x64).
      n_forward, n_inverse: forward/inverse transforms per iteration (override the even split).
      normals: standard normals drawn per field and iteration (may be the only work: no
        transforms then).
      steps: scan iterations per timed call (use the solver benchmark's step count).
      stack: do each run of same-direction transforms as one call (False: one call each).
      warmup, repeats, seed: timing repetitions (see `time_fn`) and the random input's seed.
    """
    if len(shape) < 2:
        raise ValueError(f"fft_floor shape={tuple(shape)} needs at least two axes [..., n, n]")
    if n_forward is None and n_inverse is None:
        if count is None:
            raise ValueError("fft_floor needs count or n_forward and n_inverse")
        n_forward, n_inverse = (count + 1) // 2, count // 2
    elif n_forward is None:  # the rest of count, or none
        n_forward = 0 if count is None else count - n_inverse
    elif n_inverse is None:
        n_inverse = 0 if count is None else count - n_forward
    if count is not None and n_forward + n_inverse != count:
        raise ValueError(
            f"fft_floor n_forward={n_forward} + n_inverse={n_inverse} must equal count={count}"
        )
    if isinstance(normals, bool) or not isinstance(normals, int) or normals < 0:
        raise ValueError(f"fft_floor normals={normals!r} must be an int ≥ 0")
    if n_forward < 0 or n_inverse < 0 or n_forward + n_inverse + normals < 1:
        raise ValueError(
            f"fft_floor n_forward={n_forward}, n_inverse={n_inverse} and normals={normals} must "
            "be ≥ 0 with a positive sum"
        )
    if steps < 1:
        raise ValueError(f"fft_floor steps={steps} must be ≥ 1")
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"fft_floor dtype={dtype} must be a real floating dtype")
    r = jax.random.normal(jax.random.key(seed), tuple(shape), dtype)
    c = jnp.fft.rfft2(r, axes=(-2, -1))
    chain = make_fft_chain(shape, n_forward, n_inverse, steps, stack, normals)
    return time_fn(chain, r, c, warmup=warmup, repeats=repeats)["median"]


# --- benchmark groups -----------------------------------------------------------------------


def solver_benchmarks(quick: bool = False, configs: Configs | None = None) -> list[BenchRecord]:
    """Group "solver": throughput and floor ratio of the Navier–Stokes (DNS) steps (`configs`:
    unused, it measures paper A's flow on its own grids).

    For each stepper ("semi_implicit", "cn_rk4"), size n ∈ (64, 128, 256) and batch ∈ (1, 16)
    (quick: n ∈ (16, 32), batch ∈ (1, 2)), times K = 20 (quick: 2) vmapped steps of a batch of
    float32 Gaussian-random-field states inside one jitted `lax.scan` (paper A's flow: ν = 1e-3,
    dt = 1e-3, diagonal forcing, σ = 5e-5), and records

    * `solver/{stepper}/n{n}/b{batch}/steps_per_s` — batched steps per second (each advances all
      `batch` fields; multiply by batch for field-steps/s), no target;
    * `solver/{stepper}/n{n}/b{batch}/floor_ratio` — step time / `fft_floor` time of the work the
      step must do (`Solver.step_cost`: the transforms counted from the equation and the
      stochastic forcing's normals) on `[batch, n, n]` arrays in the same scan; target ≤ 1.3 at
      n = 256.

    Both come from median times (`time_fn`, compile excluded). A ratio near or a little under 1
    means the step costs only its counted work: the floor carries a little elementwise glue of
    its own, and on a loaded machine the two timings fluctuate by ~10 % independently. Where the
    grid is too small for the default stochastic-forcing band (noise_modes < n/2), the band is
    narrowed to n/2 − 1 modes; the record's config says which was used.
    """
    # Imported here, not at the top: the record/timing/file utilities above serve every group
    # and must not pay for (or break with) the physics stack's import.
    from closurejax.physics import initial_conditions
    from closurejax.physics import navier_stokes as ns

    sizes = (16, 32) if quick else (64, 128, 256)
    batches = (1, 2) if quick else (1, 16)
    steps = 2 if quick else 20
    dtype = jnp.float32
    noise_modes_default = ns.FlowParams().noise_modes
    out = []
    for stepper in ns.STEPPERS:
        for n in sizes:
            noise_modes = min(noise_modes_default, n // 2 - 1)
            params = ns.FlowParams(
                viscosity=1e-3,
                dt=1e-3,
                forcing="diagonal",
                noise_sigma=5e-5,
                noise_modes=noise_modes,
            )
            solver = ns.make_solver(params, size=n, stepper=stepper)
            run = _scan_steps(solver, steps)
            for batch in batches:
                key = jax.random.key(n * 1000 + batch)
                init_key, run_key = jax.random.split(key)
                grf = functools.partial(
                    initial_conditions.gaussian_random_field, size=n, dtype=dtype
                )
                omega0 = jax.vmap(grf)(jax.random.split(init_key, batch))
                state = solver.initial_state(omega0)
                run_keys = jax.random.split(run_key, batch)
                seconds = time_fn(run, state, run_keys)["median"]
                cost = solver.step_cost
                floor = fft_floor(
                    (batch, n, n),
                    dtype=dtype,
                    n_forward=cost.forward,
                    n_inverse=cost.inverse,
                    normals=cost.normals,
                    steps=steps,
                )
                config = {
                    "n": n,
                    "batch": batch,
                    "stepper": stepper,
                    "K": steps,
                    "dtype": np.dtype(dtype).name,
                    "noise_modes": noise_modes,
                    "ffts_forward_per_step": cost.forward,
                    "ffts_inverse_per_step": cost.inverse,
                    "normals_per_step": cost.normals,
                    "step_seconds": seconds / steps,
                    "floor_step_seconds": floor / steps,
                }
                prefix = f"solver/{stepper}/n{n}/b{batch}"
                out.append(
                    record(f"{prefix}/steps_per_s", steps / seconds, "steps/s", config=config)
                )
                out.append(
                    record(
                        f"{prefix}/floor_ratio",
                        seconds / floor,
                        "ratio",
                        target=FLOOR_RATIO_TARGET if n == 256 else None,
                        lower_is_better=True,
                        config=config,
                    )
                )
    return out


def _scan_steps(solver: Solver, steps: int) -> Callable[[Any, jax.Array], Any]:
    """jit(state [batch…], run keys [batch] -> state after `steps` vmapped steps in a lax.scan)."""
    from closurejax.physics import navier_stokes as ns

    batched_step = jax.vmap(solver.step)
    batched_key = jax.vmap(ns.step_key)

    def run(state: Any, run_keys: jax.Array) -> Any:
        def body(s: Any, _: None) -> tuple[Any, None]:
            return batched_step(s, batched_key(run_keys, s)), None

        final, _ = lax.scan(body, state, None, length=steps)
        return final

    return jax.jit(run)


CONFIGS: dict[str, tuple[str, ...]] = {"solver": ()}
"""The study configs each group of this module needs (`Configs`)."""
GROUPS: dict[str, Group] = {"solver": solver_benchmarks}
"""The groups of this module by name."""
