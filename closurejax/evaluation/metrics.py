"""Diagnostics of vorticity fields `[..., n, n]` on the periodic square [0, L)².

Energy E = ½⟨|u|²⟩ and enstrophy Z = ½⟨ω²⟩ are domain averages (so they do not depend on the
grid for a resolved field); the energy spectrum E(k) bins ½|û_k|² over integer shells
k − ½ ≤ |k| < k + ½ so that Σ_k E(k) = E (papers.md, "Online use": spectra with a k⁻³ line).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.physics.grid import SpectralGrid


def _rfft_weights(n: int) -> np.ndarray:
    """Multiplicity of each rfft column in the full spectrum (1 for ky = 0 and Nyquist, else 2)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    w[-1] = 1.0
    return w


def _grid_for(field: jax.Array, length: float) -> SpectralGrid:
    return SpectralGrid(int(field.shape[-1]), length)


def energy(omega: jax.Array, length: float = 1.0) -> jax.Array:
    """E = ½⟨u² + v²⟩ of vorticity `[..., n, n]` → `[...]`."""
    grid = _grid_for(omega, length)
    u_hat, v_hat = grid.velocity_hat(grid.to_spectral(omega))
    power = (jnp.abs(u_hat) ** 2 + jnp.abs(v_hat) ** 2) * _rfft_weights(grid.size)
    return 0.5 * jnp.sum(power, axis=(-2, -1)) / grid.size**4


def enstrophy(omega: jax.Array) -> jax.Array:
    """Z = ½⟨ω²⟩ of `[..., n, n]` → `[...]`."""
    return 0.5 * jnp.mean(omega**2, axis=(-2, -1))


def energy_spectrum(omega: jax.Array, length: float = 1.0) -> jax.Array:
    """Shell-summed kinetic energy E(k), k = 0 … n/2: vorticity `[..., n, n]` → `[..., n/2+1]`."""
    grid = _grid_for(omega, length)
    u_hat, v_hat = grid.velocity_hat(grid.to_spectral(omega))
    power = 0.5 * (jnp.abs(u_hat) ** 2 + jnp.abs(v_hat) ** 2) * _rfft_weights(grid.size)
    power = power / grid.size**4
    kx, ky = grid.integer_wavenumbers
    shell = np.rint(np.sqrt(kx**2 + ky**2)).astype(int).ravel()
    nbins = grid.size // 2 + 1
    keep = shell < nbins
    flat = power.reshape(*power.shape[:-2], -1)[..., keep]
    one_hot = np.zeros((keep.sum(), nbins))
    one_hot[np.arange(keep.sum()), shell[keep]] = 1.0
    return flat @ one_hot


def relative_error(estimate: jax.Array, truth: jax.Array) -> jax.Array:
    """‖estimate − truth‖_F / ‖truth‖_F over the last two axes → `[...]`."""
    num = jnp.sqrt(jnp.sum((estimate - truth) ** 2, axis=(-2, -1)))
    return num / jnp.sqrt(jnp.sum(truth**2, axis=(-2, -1)))
