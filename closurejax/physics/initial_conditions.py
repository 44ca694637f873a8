"""Gaussian-random-field initial vorticity (arXiv 2408.02965: α = 2.5, τ = 7).

The covariance is the FNO papers' C = σ²(−Δ + τ²)^{−α} with σ = τ^{α−1} (so the field is O(1)
for any τ), sampled as Re(ifft2(√λ_k ξ_k)) with √λ_k = n²·√2·σ·(4π²|k|² + τ²)^{−α/2}, k integer
(domain [0, 1)²; for side L the wavenumber is 2πk/L), and the mean mode set to zero.
The draw covers |k_x|, |k_y| ≤ n/2 − 1 (the Nyquist row and column are left at zero so that every
mode has a well-defined conjugate partner).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.physics.grid import SpectralGrid, band_wavenumbers, random_real_field_hat


def grf_amplitudes(grid: SpectralGrid, alpha: float, tau: float) -> np.ndarray:
    """√λ_k of the module docstring on the centred band |k| ≤ n/2 − 1, `[n−1, n−1]`."""
    half = grid.size // 2 - 1
    kx, ky = band_wavenumbers(half, grid.length)
    sigma = tau ** (alpha - 1.0)
    sqrt_eig = (
        grid.size**2
        * np.sqrt(2.0)
        * sigma
        * (4 * np.pi**2 * (kx**2 + ky**2) + tau**2) ** (-alpha / 2)
    )
    sqrt_eig[half, half] = 0.0
    return sqrt_eig


def gaussian_random_field(
    key: jax.Array,
    size: int,
    alpha: float = 2.5,
    tau: float = 7.0,
    length: float = 1.0,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """One mean-free Gaussian random field `[size, size]` (vmap over keys for a batch)."""
    if alpha <= 1.0:
        raise ValueError(f"GRF alpha must be > 1 for a square-integrable field, got alpha={alpha}")
    if tau <= 0:
        raise ValueError(f"GRF tau must be > 0, got tau={tau}")
    grid = SpectralGrid(size, length)
    coeffs = random_real_field_hat(key, grf_amplitudes(grid, alpha, tau), grid, dtype)
    return grid.to_physical(coeffs).astype(dtype)
