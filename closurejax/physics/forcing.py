"""Deterministic and stochastic forcings of the 2-D vorticity equation (arXiv 2408.02965, the
system).

Deterministic forcings are returned as constant spectral fields `[n, n//2+1]` (numpy) of the
*vorticity* equation. The stochastic forcing is the spatially smooth Q-Wiener noise of
Lord, Powell & Shardlow (2014, §10.2, `get_twod_bj` / `get_twod_dW`), drawn once per time step
from that step's key and held fixed over all stages of the step.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.physics.grid import SpectralGrid, band_wavenumbers, random_real_field_hat

FORCINGS = ("none", "diagonal", "kolmogorov")


def diagonal_forcing(grid: SpectralGrid, amplitude: float = 0.1) -> np.ndarray:
    """Paper A's forcing f = a·(sin 2π(x+y)/L + cos 2π(x+y)/L), a = 0.1; spectral `[n, n//2+1]`."""
    x, y = grid.coordinates()
    phase = 2 * np.pi * (x + y) / grid.length
    f = amplitude * (np.sin(phase) + np.cos(phase))
    return np.fft.rfft2(f)


def kolmogorov_forcing(
    grid: SpectralGrid, wavenumber: int = 4, amplitude: float = 1.0
) -> np.ndarray:
    """Kolmogorov forcing: body force (a·sin(2πk·y/L), 0) on the velocity, as in jax-cfd.

    Its curl forces the vorticity: f_ω = ∂_x f_v − ∂_y f_u = −a·(2πk/L)·cos(2πk·y/L).
    Usually paired with linear drag (−μω, `FlowParams.drag`). Returns spectral `[n, n//2+1]`.
    """
    _, y = grid.coordinates()
    q = 2 * np.pi * wavenumber / grid.length
    return np.fft.rfft2(-amplitude * q * np.cos(q * y))


def deterministic_forcing(
    grid: SpectralGrid, name: str, amplitude: float, wavenumber: int
) -> np.ndarray:
    """Dispatches on `name` in FORCINGS; returns the spectral vorticity forcing `[n, n//2+1]`."""
    if name == "none":
        return np.zeros(grid.rfft_shape, np.complex128)
    if name == "diagonal":
        return diagonal_forcing(grid, amplitude)
    if name == "kolmogorov":
        return kolmogorov_forcing(grid, wavenumber, amplitude)
    raise ValueError(f"unknown forcing {name!r}; allowed: {FORCINGS}")


@dataclasses.dataclass(frozen=True)
class StochasticForcing:
    """Smooth stochastic forcing σ·Ẇ with Ẇ = dW/dt (Lord–Powell–Shardlow; arXiv 2408.02965).

    Per step, dW = Re(ifft2(b ⊙ ξ)) with Fourier weights
      b_k = exp(−α|2πk|²/2) · √dt · n² / L,
    and ξ_k a sum of κ independent standard complex normals (drawn as √κ·N(0,1) per part, which has
    the same law). Ẇ = dW/dt, so E|Ŵ_k|² = κ·b_k²/dt² ∝ 1/dt. Paper values: α = 0.005, κ = 10,
    σ = 5e-5.

    Departure from the reference code: ξ is drawn only on the band |k_x|, |k_y| ≤ `modes` (default
    12, where the weight has fallen to e^{-14} of the mean mode for α = 0.005), instead of on the
    whole grid. The noise is then the *same* band-limited field on every grid for a given key, so a
    DNS and a coarse run sharing a key share the noise realisation exactly.
    """

    sigma: float
    alpha: float
    kappa: int
    modes: int
    dt: float
    length: float = 1.0

    def amplitudes(self, grid: SpectralGrid) -> np.ndarray:
        """b_k of the docstring on the centred band, `[2K+1, 2K+1]`."""
        kx, ky = band_wavenumbers(self.modes, self.length)
        weights = np.exp(-self.alpha * (2 * np.pi) ** 2 * (kx**2 + ky**2) / 2)
        return weights * np.sqrt(self.dt) * grid.size**2 / self.length

    def white_noise_hat(
        self, key: jax.Array, grid: SpectralGrid, dtype: jnp.dtype = jnp.float32
    ) -> jax.Array:
        """Ŵ = rfft2(dW/dt) for one step, `[n, n//2+1]` complex (not multiplied by σ)."""
        b = self.amplitudes(grid) * np.sqrt(self.kappa) / self.dt
        return random_real_field_hat(key, b, grid, dtype)

    def expected_power(self, grid: SpectralGrid) -> np.ndarray:
        """E|Ŵ_k|² on the rfft layout `[n, n//2+1]` (zero outside the band)."""
        b2 = (self.amplitudes(grid) ** 2) * self.kappa / self.dt**2
        out = np.zeros(grid.rfft_shape)
        half = self.modes
        rows = np.arange(-half, half + 1) % grid.size
        out[rows[:, None], np.arange(half + 1)[None, :]] = b2[:, half:]
        return out
