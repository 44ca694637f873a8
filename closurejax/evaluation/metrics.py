"""Diagnostics of vorticity fields `[..., n, n]` on the periodic square [0, L)².

Energy E = ½⟨|u|²⟩ and enstrophy Z = ½⟨ω²⟩ are domain averages (so they do not depend on the
grid for a resolved field); the energy spectrum E(k) bins ½|û_k|² over integer shells
k − ½ ≤ |k| < k + ½ so that Σ_k E(k) = E (arXiv 2408.02965, online use: spectra with a k⁻³ line).
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


def mse(estimate: jax.Array, truth: jax.Array) -> jax.Array:
    """Mean squared error over the last two axes → `[...]`."""
    return jnp.mean((estimate - truth) ** 2, axis=(-2, -1))


def ensemble_spread(ensemble: jax.Array) -> jax.Array:
    """Root-mean (over the field) ensemble variance: √⟨Var_m X⟩ for `[m, ..., n, n]` → `[...]`."""
    return jnp.sqrt(jnp.mean(jnp.var(ensemble, axis=0, ddof=1), axis=(-2, -1)))


def crps(ensemble: jax.Array, truth: jax.Array) -> jax.Array:
    """Continuous ranked probability score of an ensemble, averaged over the field.

    Per point, CRPS = E|X − y| − ½E|X − X'| with the ensemble's empirical law (the unbiased
    "fair" estimator uses m(m−1) pairs). `ensemble` `[m, ..., n, n]`, `truth` `[..., n, n]` →
    `[...]`. For a single member it reduces to the mean absolute error.
    """
    m = ensemble.shape[0]
    skill = jnp.mean(jnp.abs(ensemble - truth[None]), axis=0)
    if m == 1:
        return jnp.mean(skill, axis=(-2, -1))
    # E|X − X'| over distinct pairs via sorted members: Σ_{i<j} |x_j − x_i| = Σ_i (2i − m + 1) x_(i)
    ordered = jnp.sort(ensemble, axis=0)
    weights = (2 * jnp.arange(m) - m + 1).reshape((m,) + (1,) * (ensemble.ndim - 1))
    pair_sum = jnp.sum(weights * ordered, axis=0)  # Σ_{i<j} |x_i − x_j|
    spread = pair_sum / (m * (m - 1))  # = ½ · mean over ordered pairs i≠j
    return jnp.mean(skill - spread, axis=(-2, -1))


def spread_skill_ratio(ensemble: jax.Array, truth: jax.Array) -> jax.Array:
    """Ensemble spread / RMSE of the ensemble mean, with the (m+1)/m finite-ensemble factor:
    ≈ 1 for a calibrated ensemble. `[m, ..., n, n]`, `[..., n, n]` → `[...]`."""
    m = ensemble.shape[0]
    rmse = jnp.sqrt(mse(jnp.mean(ensemble, axis=0), truth))
    return jnp.sqrt((m + 1) / m) * ensemble_spread(ensemble) / rmse
