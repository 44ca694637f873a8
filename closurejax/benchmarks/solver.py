"""Benchmark group "solver": throughput and floor ratio of the DNS steps
(`make bench ONLY=solver`).

Cost model ("know the floor"): a pseudo-spectral solver step cannot be faster than the 2-D FFTs
and random draws its equation needs (`Solver.step_cost` counts them); `fft_floor`
(`closurejax.benchmarks.floor`) times that work, and `solver_benchmarks` reports step time /
floor time (`floor_ratio`): 1 means the step costs only its counted work; the target for the
production size n = 256 is ≤ 1.3.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from closurejax.benchmarks.floor import fft_floor
from closurejax.benchmarks.records import BenchRecord, Configs, Group, record
from closurejax.physics import initial_conditions
from closurejax.physics import navier_stokes as ns
from closurejax.timing import time_fn

__all__ = ["FLOOR_RATIO_TARGET", "CONFIGS", "GROUPS", "solver_benchmarks"]

FLOOR_RATIO_TARGET = 1.3
"""Target of `solver/*/n256/*/floor_ratio`: a DNS step within 1.3× of its counted work."""


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


def _scan_steps(solver: ns.Solver, steps: int) -> Callable[[Any, jax.Array], Any]:
    """jit(state [batch…], run keys [batch] -> state after `steps` vmapped steps in a lax.scan)."""
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
