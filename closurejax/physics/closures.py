"""Closure targets and physics-based closure estimates (arXiv 2408.02965, the closure targets).

* G = νΔω − μω + 2σẆ: the viscous (and drag) term plus noise; in the semi-implicit step it
  replaces ½dt·Lω̂ + dt·σŴ (paper A, first version).
* H = −u·∇ω + σẆ: the (dealiased) advection plus noise; it replaces dt·(N_adv + σŴ) (paper A,
  journal version; paper B).
* Π = F(u·∇ω) − ū·∇ω̄: the LES sub-grid term of the filtered equation
  ∂ω̄/∂t + ū·∇ω̄ = νΔω̄ + f̄ + σẆ̄ − Π, F a spatial filter (spectral cutoff, Gaussian or box).
* Smagorinsky's estimate of Π, −∇·(ν_e∇ω̄) with ν_e = (C_s Δ)²|S̄|, |S̄| = √(2 S̄ᵢⱼS̄ᵢⱼ)
  (C_s = 0.16 in the related code), a physics-based condition for the diffusion model.

G and H of a state use the noise of the step keyed by `key` (the same draw `Solver.step` makes),
so the closure step supplied with them equals the full step. Fields are physical `[..., n, n]`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from closurejax.physics import filters
from closurejax.physics.grid import SpectralGrid
from closurejax.physics.navier_stokes import Solver, State, advection_hat

CLOSURE_TARGETS = ("G", "H", "Pi")


def exact_g(solver: Solver, state: State, key: jax.Array) -> jax.Array:
    """G = Lω + 2σẆ of `state` for the step keyed by `key`, physical `[n, n]`."""
    omega_hat = state.omega_hat
    noise = solver.noise_hat(key, jnp.real(omega_hat).dtype)
    return solver.grid.to_physical(solver.linear * omega_hat + 2.0 * noise)


def exact_h(solver: Solver, state: State, key: jax.Array) -> jax.Array:
    """H = −u·∇ω (dealiased) + σẆ of `state` for the step keyed by `key`, physical `[n, n]`."""
    omega_hat = state.omega_hat
    noise = solver.noise_hat(key, jnp.real(omega_hat).dtype)
    return solver.grid.to_physical(advection_hat(solver.grid, omega_hat) + noise)


def exact_closure(solver: Solver, state: State, key: jax.Array, name: str) -> jax.Array:
    """Dispatches to `exact_g` / `exact_h` by `name` ("G" or "H")."""
    if name == "G":
        return exact_g(solver, state, key)
    if name == "H":
        return exact_h(solver, state, key)
    raise ValueError(f"unknown closure target {name!r} for a state; allowed: ('G', 'H')")


def subgrid_term(
    omega: jax.Array, grid: SpectralGrid, filter_name: str, **filter_params: Any
) -> jax.Array:
    """Π = F(u·∇ω) − ū·∇ω̄ on the grid of `omega` `[..., n, n]` (products dealiased as in the DNS).

    For the spectral-cutoff filter with cutoff k_c ≤ n/3, Π vanishes exactly for a field whose
    spectrum lies within k_c/2 (then u·∇ω lies within k_c and passes the filter unchanged).
    Coarse-grain the result with `filters.coarse_grain`.
    """
    grid.check_field(omega, "vorticity")

    def apply(field: jax.Array) -> jax.Array:
        return filters.apply_filter(field, filter_name, **filter_params)

    transport = -grid.to_physical(advection_hat(grid, grid.to_spectral(omega)))
    omega_bar = apply(omega)
    resolved = -grid.to_physical(advection_hat(grid, grid.to_spectral(omega_bar)))
    return apply(transport) - resolved


def smagorinsky(
    omega_bar: jax.Array, grid: SpectralGrid, cs: float = 0.16, delta: float | None = None
) -> jax.Array:
    """Smagorinsky estimate of Π, −∇·((C_sΔ)²|S̄|∇ω̄), `[..., n, n]`; Δ defaults to L/n.

    It is dissipative: ∫ω̄·Π_smag = ∫ν_e|∇ω̄|² ≥ 0, so the term −Π drains enstrophy.
    """
    if cs <= 0:
        raise ValueError(f"smagorinsky cs={cs} is invalid; allowed: cs > 0")
    delta = grid.spacing if delta is None else delta
    if delta <= 0:
        raise ValueError(f"smagorinsky delta={delta} is invalid; allowed: delta > 0")
    w_hat = grid.to_spectral(omega_bar)
    u_hat, v_hat = grid.velocity_hat(w_hat)
    du_dx, du_dy, dv_dx, wx, wy = grid.to_physical(
        jnp.stack(
            [
                grid.derivative_x(u_hat),
                grid.derivative_y(u_hat),
                grid.derivative_x(v_hat),
                grid.derivative_x(w_hat),
                grid.derivative_y(w_hat),
            ]
        )
    )
    strain = jnp.sqrt(4.0 * du_dx**2 + (du_dy + dv_dx) ** 2)  # √(2SᵢⱼSᵢⱼ), S₂₂ = −S₁₁
    nu_e = (cs * delta) ** 2 * strain
    flux_hat = grid.derivative_x(grid.to_spectral(nu_e * wx)) + grid.derivative_y(
        grid.to_spectral(nu_e * wy)
    )
    return -grid.to_physical(flux_hat)
