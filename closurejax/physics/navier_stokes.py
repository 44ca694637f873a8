"""2-D vorticity equation with stochastic forcing on jax-cfd's implicit–explicit steppers.

    ∂ω/∂t + u·∇ω = νΔω − μω + f + σẆ,   Δψ = −ω,  u = ∂ψ/∂y,  v = −∂ψ/∂x       (arXiv 2408.02965)

split for `jax_cfd.spectral.time_stepping` as an `ImplicitExplicitODE` (`VorticityEquation`):
explicit N(ω̂) = −(u·∇ω)^ (2/3-dealiased) + f̂ + ŝ, implicit Lω̂ with L = −ν(2π)²|k|² − μ; ŝ is a
source held fixed over the step (the noise σŴ, drawn once per step from the step's key, and any
closure term). Two steppers:

* "semi_implicit" — the papers' scheme (explicit Euler for advection, forcing and noise,
  Crank–Nicolson for viscosity; dt = 1e-3):
      ω̂ₙ₊₁ = [ω̂ₙ + dt·N(ω̂ₙ) + ½dt·Lω̂ₙ] / (1 − ½dt·L),
  which is jax-cfd's low-storage IMEX family with one stage (α = [0, 1], β = [0], γ = [1]).
  First order in time.
* "cn_rk4" — jax-cfd's `crank_nicolson_rk4` (Carpenter–Kennedy RK4 for N, CN for L): fourth order
  in the explicit terms, second in the implicit ones. The noise is held fixed across its stages.

Closures (arXiv 2408.02965, the closure targets): a `Solver` built with `closure="H"` drops the
advection and the noise, which a closure model supplies as H = −u·∇ω + σẆ (entering as dt·H);
`closure="G"` drops the explicit half of the viscous term and the noise, supplied as
G = νΔω − μω + 2σẆ (entering as ½dt·G; semi_implicit only, since G is defined by that scheme);
`closure="Pi"` keeps every resolved term and subtracts a sub-grid term Π (LES: ∂ω̄/∂t + ū·∇ω̄ =
… − Π). With the exact G or H of the same state and key supplied, the closure step equals the
full step (tests/physics/test_closures.py).

States are `State(omega_hat [n, n//2+1] complex, step int32)`; batch with `jax.vmap` only.
The noise of step s of a run seeded by `key` is drawn from `jax.random.fold_in(key, s)`, so a
trajectory does not depend on how it is split into chunks or resumed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax_cfd.spectral import time_stepping

from closurejax.config_section import from_section
from closurejax.physics import forcing as forcing_lib
from closurejax.physics.grid import DEALIAS_RULES, SpectralGrid

STEPPERS = ("semi_implicit", "cn_rk4")
CLOSURES = ("none", "G", "H", "Pi")


class StepCost(NamedTuple):
    """The least work of one solver step on one field (`Solver.step_cost` derives it).

    Attributes:
      forward: 2-D real forward transforms (rfft2) of an n×n field.
      inverse: 2-D real inverse transforms (irfft2) to an n×n field.
      normals: standard normal numbers drawn.
    """

    forward: int
    inverse: int
    normals: int


class State(NamedTuple):
    """Solver state: spectral vorticity `[n, n//2+1]` complex and the step counter (int32)."""

    omega_hat: jax.Array
    step: jax.Array


@dataclasses.dataclass(frozen=True)
class FlowParams:
    """Physical and numerical parameters; defaults are paper A's (arXiv 2408.02965, the system).

    `viscosity` may be 0 here (inviscid tests); configs loaded with `from_config` require ν > 0.
    """

    viscosity: float = 1e-3
    dt: float = 1e-3
    length: float = 1.0
    drag: float = 0.0
    forcing: str = "diagonal"
    forcing_amplitude: float = 0.1
    forcing_wavenumber: int = 4
    noise_sigma: float = 5e-5
    noise_alpha: float = 0.005
    noise_kappa: int = 10
    noise_modes: int = 12
    dealias: str = "two_thirds"
    max_cfl: float = 1.0

    def __post_init__(self) -> None:
        def bad(field: str, value: Any, allowed: str) -> ValueError:
            return ValueError(f"physics.{field}={value!r} is invalid; allowed: {allowed}")

        finite = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in finite.items():
            if isinstance(value, float | int) and not math.isfinite(value):
                raise bad(name, value, "a finite number")
        if self.viscosity < 0:
            raise bad("viscosity", self.viscosity, "ν > 0")
        if self.dt <= 0:
            raise bad("dt", self.dt, "dt > 0 (and below the CFL bound, checked on the state)")
        if self.length <= 0:
            raise bad("length", self.length, "L > 0")
        if self.drag < 0:
            raise bad("drag", self.drag, "μ ≥ 0")
        if self.forcing not in forcing_lib.FORCINGS:
            raise bad("forcing", self.forcing, str(forcing_lib.FORCINGS))
        if self.noise_sigma < 0:
            raise bad("noise_sigma", self.noise_sigma, "σ ≥ 0")
        if self.noise_alpha <= 0:
            raise bad("noise_alpha", self.noise_alpha, "α > 0")
        if int(self.noise_kappa) != self.noise_kappa or self.noise_kappa < 1:
            raise bad("noise_kappa", self.noise_kappa, "an integer κ ≥ 1")
        if int(self.noise_modes) != self.noise_modes or self.noise_modes < 1:
            raise bad("noise_modes", self.noise_modes, "an integer ≥ 1")
        if self.dealias not in DEALIAS_RULES:
            raise bad("dealias", self.dealias, str(DEALIAS_RULES))
        if self.max_cfl <= 0:
            raise bad("max_cfl", self.max_cfl, "> 0")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FlowParams:
        """Builds from a config section (ml_collections ConfigDict or dict), requiring ν > 0."""
        params = from_section(cls, config, "physics")
        if params.viscosity <= 0:
            raise ValueError(
                f"physics.viscosity={params.viscosity!r} is invalid; allowed: ν > 0 "
                "(the inviscid limit is for tests only)"
            )
        return params

    @property
    def noise(self) -> forcing_lib.StochasticForcing:
        return forcing_lib.StochasticForcing(
            sigma=self.noise_sigma,
            alpha=self.noise_alpha,
            kappa=int(self.noise_kappa),
            modes=int(self.noise_modes),
            dt=self.dt,
            length=self.length,
        )


def advection_hat(grid: SpectralGrid, omega_hat: jax.Array) -> jax.Array:
    """−(u·∇ω)^ with the grid's dealiasing, `[..., n, n//2+1]` (batch-safe).

    Four inverse FFTs (u, v, ∂ω/∂x, ∂ω/∂y, stacked into one call) and one forward FFT.
    """
    u_hat, v_hat = grid.velocity_hat(omega_hat)
    stacked = jnp.stack([u_hat, v_hat, grid.derivative_x(omega_hat), grid.derivative_y(omega_hat)])
    u, v, wx, wy = grid.to_physical(stacked)
    return -grid.dealias_mask * grid.to_spectral(u * wx + v * wy)


@dataclasses.dataclass(frozen=True, eq=False)
class VorticityEquation(time_stepping.ImplicitExplicitODE):
    """∂ω̂/∂t = N(ω̂) + Lω̂ for jax-cfd's steppers; see the module docstring.

    `source_hat` `[n, n//2+1]` is constant over a step (noise, closure); `advection=False` drops
    the u·∇ω term (closure "H").
    """

    grid: SpectralGrid
    linear: np.ndarray
    forcing_hat: np.ndarray
    source_hat: jax.Array | None = None
    advection: bool = True

    def explicit_terms(self, omega_hat: jax.Array) -> jax.Array:
        terms = self.forcing_hat.astype(omega_hat.dtype) if self.forcing_hat is not None else 0.0
        if self.advection:
            terms = terms + advection_hat(self.grid, omega_hat)
        if self.source_hat is not None:
            terms = terms + self.source_hat
        return jnp.broadcast_to(terms, omega_hat.shape)

    def implicit_terms(self, omega_hat: jax.Array) -> jax.Array:
        return self.linear * omega_hat

    def implicit_solve(self, omega_hat: jax.Array, time_step: float) -> jax.Array:
        """ω̂ / (1 − τL), as a product with the real reciprocal (a numpy constant for the python
        float τ of jax-cfd's steppers): XLA lowers complex ÷ real to a full complex division
        (265 µs of a 1.6 ms no-closure step of 100 members at 64² on the development CPU)."""
        if isinstance(time_step, int | float):
            inverse = 1.0 / (1.0 - time_step * self.linear)
            return omega_hat * inverse.astype(jnp.real(omega_hat).dtype)
        return omega_hat / (1 - time_step * self.linear)


def semi_implicit_euler_cn(
    equation: time_stepping.ImplicitExplicitODE, time_step: float
) -> Callable[[jax.Array], jax.Array]:
    """The papers' scheme: ω̂ ← [ω̂ + dt·N(ω̂) + ½dt·Lω̂] / (1 − ½dt·L) (one-stage IMEX)."""
    return time_stepping.low_storage_runge_kutta_crank_nicolson(
        alphas=[0.0, 1.0], betas=[0.0], gammas=[1.0], equation=equation, time_step=time_step
    )


_STEPPER_FNS = {
    "semi_implicit": (semi_implicit_euler_cn, 1),
    "cn_rk4": (time_stepping.crank_nicolson_rk4, 5),
}


@dataclasses.dataclass(frozen=True)
class Solver:
    """A configured solver: `step(state, key[, closure]) -> state`, a pure, jit-able function.

    Attributes:
      params: flow parameters.
      size: grid points per side.
      stepper: one of STEPPERS.
      closure: one of CLOSURES — which term the `closure` argument of `step` supplies.
    """

    params: FlowParams
    size: int
    stepper: str = "semi_implicit"
    closure: str = "none"

    def __post_init__(self) -> None:
        if self.stepper not in STEPPERS:
            raise ValueError(f"unknown stepper {self.stepper!r}; allowed: {STEPPERS}")
        if self.closure not in CLOSURES:
            raise ValueError(f"unknown closure {self.closure!r}; allowed: {CLOSURES}")
        if self.closure == "G" and self.stepper != "semi_implicit":
            raise ValueError(
                "closure 'G' (explicit half of the viscous term plus noise) is defined by the "
                "semi_implicit scheme of paper A; use stepper='semi_implicit'"
            )
        if self.params.noise_sigma > 0 and self.params.noise_modes >= self.size // 2:
            raise ValueError(
                f"physics.noise_modes={self.params.noise_modes} must be < n/2={self.size // 2} "
                f"for grid size {self.size}"
            )
        self.grid  # noqa: B018  (validates the size early)

    @functools.cached_property
    def grid(self) -> SpectralGrid:
        return SpectralGrid(self.size, self.params.length, self.params.dealias)

    @functools.cached_property
    def linear(self) -> np.ndarray:
        """L = −ν(2π)²|k|² − μ, `[n, n//2+1]`."""
        return self.params.viscosity * self.grid.laplacian - self.params.drag

    @functools.cached_property
    def forcing_hat(self) -> np.ndarray:
        p = self.params
        return forcing_lib.deterministic_forcing(
            self.grid, p.forcing, p.forcing_amplitude, p.forcing_wavenumber
        )

    @property
    def step_cost(self) -> StepCost:
        """The least work one `step` must do: transforms and random draws (see `StepCost`).

        Per evaluation of the explicit terms (one per stage: 1 for "semi_implicit", 5 for
        "cn_rk4", whose Carpenter–Kennedy scheme has five stages):

        * advection (every closure but H, which replaces it): û, v̂, (∂ω/∂x)^, (∂ω/∂y)^ are
          formed in spectral space and need 4 inverse transforms to physical space, the product
          u·∂ω/∂x + v·∂ω/∂y 1 forward transform back. (The divergence form ∂x(uω) + ∂y(vω)
          needs 3 + 2: the same 5.)
        * a closure field given in physical space (G, H, Π): 1 forward transform per step (it is
          held fixed over the stages); none if given spectrally (`step_hat`).
        * the stochastic forcing (closures "none" and "Pi"; H and G contain it): 2(2K+1)² standard
          normals per step for the band |k_x|, |k_y| ≤ K = `noise_modes` (real and imaginary
          parts of the band's coefficients), drawn once per step, never per stage.

        Everything else (spectral multipliers, the Crank–Nicolson solve, the dealias mask) is
        elementwise on `[n, n//2+1]` arrays.
        """
        stages = _STEPPER_FNS[self.stepper][1]
        advects = self.closure != "H"
        band = 2 * int(self.params.noise_modes) + 1
        noisy = self.params.noise_sigma > 0 and self.closure in ("none", "Pi")
        return StepCost(
            forward=stages * advects + (self.closure != "none"),
            inverse=4 * stages * advects,
            normals=2 * band * band if noisy else 0,
        )

    @property
    def ffts_forward_per_step(self) -> int:
        """2-D real forward FFTs of size n×n one step does with a physical closure field."""
        return self.step_cost.forward

    @property
    def ffts_inverse_per_step(self) -> int:
        """2-D real inverse FFTs of size n×n one step does."""
        return self.step_cost.inverse

    def equation(
        self, source_hat: jax.Array | None = None, advection: bool = True
    ) -> VorticityEquation:
        return VorticityEquation(self.grid, self.linear, self.forcing_hat, source_hat, advection)

    # --- boundary --------------------------------------------------------------------------

    def initial_state(self, omega: jax.Array | np.ndarray, step: int = 0) -> State:
        """Validated state from physical vorticity `[..., n, n]` (finite, real, within CFL)."""
        grid = self.grid
        grid.check_field(omega, "initial vorticity")
        omega = jnp.asarray(omega)
        omega_hat = grid.to_spectral(omega)
        cfl = float(jnp.max(self.cfl_number(omega_hat)))
        if cfl > self.params.max_cfl:
            raise ValueError(
                f"physics.dt={self.params.dt} violates the CFL bound for this state: "
                f"max|u|·dt/dx = {cfl:.3g} > max_cfl={self.params.max_cfl}; reduce dt"
            )
        return State(omega_hat, jnp.full(omega.shape[:-2], step, jnp.int32))

    def cfl_number(self, omega_hat: jax.Array) -> jax.Array:
        """max(|u|, |v|)·dt/dx per field `[...]`."""
        u_hat, v_hat = self.grid.velocity_hat(omega_hat)
        u, v = self.grid.to_physical(u_hat), self.grid.to_physical(v_hat)
        vmax = jnp.maximum(jnp.max(jnp.abs(u), axis=(-2, -1)), jnp.max(jnp.abs(v), axis=(-2, -1)))
        return vmax * self.params.dt / self.grid.spacing

    def vorticity(self, state: State) -> jax.Array:
        """Physical vorticity `[..., n, n]`."""
        return self.grid.to_physical(state.omega_hat)

    def time(self, state: State) -> jax.Array:
        return state.step * self.params.dt

    # --- the step --------------------------------------------------------------------------

    def noise_hat(self, key: jax.Array, dtype: jnp.dtype) -> jax.Array:
        """σ·Ŵ for the step keyed by `key`, `[n, n//2+1]`."""
        p = self.params
        if p.noise_sigma == 0:
            return jnp.zeros(self.grid.rfft_shape, jnp.result_type(dtype, jnp.complex64))
        return p.noise_sigma * p.noise.white_noise_hat(key, self.grid, dtype)

    def step(self, state: State, key: jax.Array, closure: jax.Array | None = None) -> State:
        """One time step. `closure`: physical `[n, n]` G, H or Π when `self.closure` says so.

        `key` is this step's key (callers use `fold_in(run_key, state.step)`). Equals
        `step_hat(state, key, to_spectral(closure))`.
        """
        self._check_closure(closure)
        closure_hat = None
        if closure is not None:
            real_dtype = jnp.real(state.omega_hat).dtype
            closure_hat = self.grid.to_spectral(closure.astype(real_dtype))
        return self.step_hat(state, key, closure_hat)

    def _check_closure(self, closure: jax.Array | None) -> None:
        if (closure is None) != (self.closure == "none"):
            raise ValueError(
                f"Solver(closure={self.closure!r}) "
                + ("needs a closure field" if closure is None else "takes no closure field")
            )

    def step_hat(self, state: State, key: jax.Array, closure_hat: jax.Array | None = None) -> State:
        """`step` with the closure given in spectral space, `[n, n//2+1]` complex: no transform
        of the closure (the coupled step keeps its closure samples spectral)."""
        self._check_closure(closure_hat)
        omega_hat = state.omega_hat
        real_dtype = jnp.real(omega_hat).dtype
        if self.closure == "none":
            eq = self.equation(self.noise_hat(key, real_dtype))
        else:
            closure_hat = closure_hat.astype(omega_hat.dtype)
            if self.closure == "H":
                eq = self.equation(closure_hat, advection=False)
            elif self.closure == "G":
                # ½dt·G replaces ½dt·Lω̂ₙ + dt·σŴ in the semi-implicit update.
                eq = self.equation(0.5 * closure_hat - 0.5 * self.linear * omega_hat)
            else:  # "Pi"
                eq = self.equation(self.noise_hat(key, real_dtype) - closure_hat)
        step_fn = _STEPPER_FNS[self.stepper][0](eq, self.params.dt)
        return State(step_fn(omega_hat), state.step + 1)


def make_solver(
    params: FlowParams, size: int, stepper: str = "semi_implicit", closure: str = "none"
) -> Solver:
    """Builds a `Solver`; see its docstring."""
    return Solver(params, size, stepper, closure)


# --- time loops ------------------------------------------------------------------------------


MEMBER_CACHE_BYTES = 2 * 2**20
"""Working set of the members one CPU core advances together (`members_per_slice`): its L2."""


def members_per_slice(
    size: int, dtype: Any = jnp.float32, backend: str | None = None
) -> int | None:
    """How many fields of an n×n batch a CPU time loop should advance together, or None (all).

    A DNS step's working set per field is about 8 real n×n arrays (the 4 stacked fields of the
    advection term in physical and spectral space). Once a batch's working set outgrows the
    cores' L2 caches, every transform streams from L3/DRAM: at 256² (2 MiB per field in float32)
    a vmapped batch of 4 ran 0.99 ms per field-step on the idle 2-core development CPU (EPYC,
    2 MiB L2 per core) against 0.81 ms for one field (1.93 against 1.51 ms with the 4 fields
    advanced one at a time — their whole time loop, then the next — while the cores were shared),
    bit-identically. Returns the largest power of two k with k fields' working set
    ≤ `MEMBER_CACHE_BYTES` (at least 1) on a single CPU device; None on accelerators, which want
    the whole batch, and with several devices (a sharded batch must not be sliced across them).
    """
    if (backend or jax.default_backend()) != "cpu" or jax.device_count() > 1:
        return None
    per_field = 8 * size * size * jnp.dtype(dtype).itemsize
    ratio = MEMBER_CACHE_BYTES / per_field
    return 1 if ratio < 2 else 2 ** int(math.floor(math.log2(ratio)))


def map_members(fn: Callable[..., Any], slice_size: int | None, *args: Any) -> Any:
    """`jax.vmap(fn)(*args)` over the leading (member) axis, computed `slice_size` members at a
    time in a `lax.map` loop (None: all at once). The members must be independent; then the
    result is the same, bit for bit (each member's arithmetic is unchanged)."""
    batch = jax.tree.leaves(args)[0].shape[0]
    if slice_size is None or slice_size >= batch:
        return jax.vmap(fn)(*args)
    return lax.map(lambda a: fn(*a), args, batch_size=slice_size)


def step_key(key: jax.Array, state: State) -> jax.Array:
    """The key of the step that starts from `state`: fold_in(run key, step counter)."""
    return jax.random.fold_in(key, state.step)


def advance(
    step_fn: Callable[[State, jax.Array], State], state: State, key: jax.Array, num_steps: int
) -> State:
    """`num_steps` steps with lax.fori_loop (step s keyed by fold_in(key, s)); single state."""
    return lax.fori_loop(0, num_steps, lambda _, s: step_fn(s, step_key(key, s)), state)


def rollout(
    step_fn: Callable[[State, jax.Array], State],
    state: State,
    key: jax.Array,
    num_snapshots: int,
    steps_per_snapshot: int,
    observe: Callable[[State, jax.Array], Any],
) -> tuple[State, Any]:
    """Snapshots of a trajectory with lax.scan; single state (vmap for ensembles).

    Observation j is `observe(state_j, key_j)` of the state after j·steps_per_snapshot steps,
    with key_j the key of the step that starts from it (so closure targets that need that step's
    noise can be formed); j = 0 … num_snapshots−1. Returns (state after the last snapshot,
    observations stacked along a new leading axis).
    """
    if num_snapshots < 1 or steps_per_snapshot < 1:
        raise ValueError(
            f"num_snapshots={num_snapshots} and steps_per_snapshot={steps_per_snapshot} must be ≥ 1"
        )
    first = observe(state, step_key(key, state))

    def block(s: State, _: None) -> tuple[State, Any]:
        s = advance(step_fn, s, key, steps_per_snapshot)
        return s, observe(s, step_key(key, s))

    final, rest = lax.scan(block, state, None, length=num_snapshots - 1)
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return final, stacked
