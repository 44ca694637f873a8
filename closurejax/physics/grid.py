"""Spectral grid on the periodic square [0, L)², a thin layer over `jax_cfd.base.grids.Grid`.

Conventions (arXiv 2408.02965, the system): points x_i = i·L/n (the papers'
`linspace(0, 1, s+1)[:-1]`), fields are real `[..., n, n]` arrays with axis -2 = x and axis -1 = y,
and their transforms are `rfft2` over the last two axes, `[..., n, n//2 + 1]` complex. Every
transform here acts on the last two axes only, so it is safe on batched arrays (unlike jax-cfd's
helpers, which transform all axes). Wavenumbers `kx, ky` are ordinal frequencies in cycles per unit
length (jax-cfd's `rfft_mesh`): the angular wavenumber is 2π·k, the Laplacian's symbol −(2π)²|k|².
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax_cfd.base import grids as cfd_grids
from jax_cfd.spectral import utils as cfd_spectral_utils

DEALIAS_RULES = ("two_thirds", "brick_wall", "none")


@dataclasses.dataclass(frozen=True)
class SpectralGrid:
    """An n×n periodic grid of side `length` with its spectral operators (numpy constants).

    Attributes:
      size: points per side n (even, ≥ 4).
      length: side L of the square.
      dealias: "two_thirds" — keep |k_x|, |k_y| ≤ ⌊n/3⌋ (Orszag's rule, symmetric under k → −k, so
        the truncated dynamics conserve energy and enstrophy); "brick_wall" — jax-cfd's
        `brick_wall_filter_2d` (slightly asymmetric; use it to reproduce jax-cfd bit for bit);
        "none" — no truncation.
    """

    size: int
    length: float = 1.0
    dealias: str = "two_thirds"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int | np.integer) or self.size < 4 or self.size % 2:
            raise ValueError(f"grid size must be an even integer >= 4, got size={self.size!r}")
        if not np.isfinite(self.length) or self.length <= 0:
            raise ValueError(f"domain length must be finite and > 0, got length={self.length!r}")
        if self.dealias not in DEALIAS_RULES:
            raise ValueError(f"unknown dealias rule {self.dealias!r}; allowed: {DEALIAS_RULES}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def rfft_shape(self) -> tuple[int, int]:
        return (self.size, self.size // 2 + 1)

    @property
    def spacing(self) -> float:
        return self.length / self.size

    @functools.cached_property
    def cfd_grid(self) -> cfd_grids.Grid:
        """The equivalent jax-cfd grid."""
        return cfd_grids.Grid(self.shape, domain=((0.0, self.length), (0.0, self.length)))

    @functools.cached_property
    def wavenumbers(self) -> tuple[np.ndarray, np.ndarray]:
        """(kx, ky), each `[n, n//2+1]`, cycles per unit length."""
        with jax.ensure_compile_time_eval():  # numpy constants even if first used under jit
            kx, ky = self.cfd_grid.rfft_mesh()
        return np.asarray(kx, np.float64), np.asarray(ky, np.float64)

    @functools.cached_property
    def integer_wavenumbers(self) -> tuple[np.ndarray, np.ndarray]:
        """(kx, ky) as integers (cycles per domain), each `[n, n//2+1]`."""
        kx, ky = self.wavenumbers
        return np.rint(kx * self.length).astype(int), np.rint(ky * self.length).astype(int)

    @functools.cached_property
    def laplacian(self) -> np.ndarray:
        """Symbol of Δ: −(2π)²(kx² + ky²), `[n, n//2+1]`."""
        kx, ky = self.wavenumbers
        return -((2 * np.pi) ** 2) * (kx**2 + ky**2)

    @functools.cached_property
    def inverse_laplacian(self) -> np.ndarray:
        """Symbol of Δ⁻¹ on mean-free fields (0 at k = 0), `[n, n//2+1]`."""
        lap = self.laplacian.copy()
        lap[0, 0] = 1.0
        inv = 1.0 / lap
        inv[0, 0] = 0.0
        return inv

    @functools.cached_property
    def dealias_mask(self) -> np.ndarray:
        """0/1 mask `[n, n//2+1]` of the modes kept in the nonlinear term."""
        if self.dealias == "none":
            return np.ones(self.rfft_shape)
        if self.dealias == "brick_wall":
            with jax.ensure_compile_time_eval():
                mask = cfd_spectral_utils.brick_wall_filter_2d(self.cfd_grid)
            return np.asarray(mask, np.float64)
        kx, ky = self.integer_wavenumbers
        kmax = self.size // 3
        return ((np.abs(kx) <= kmax) & (np.abs(ky) <= kmax)).astype(np.float64)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) meshes `[n, n]` of the grid points x_i = i·L/n, indexing 'ij'."""
        axis = np.arange(self.size) * self.spacing
        return np.meshgrid(axis, axis, indexing="ij")

    # --- transforms (last two axes only: batch-safe) -------------------------------------------

    def to_spectral(self, field: jax.Array) -> jax.Array:
        """rfft2 over the last two axes: `[..., n, n]` real → `[..., n, n//2+1]` complex."""
        return jnp.fft.rfft2(field, axes=(-2, -1))

    def to_physical(self, field_hat: jax.Array) -> jax.Array:
        """irfft2 over the last two axes: `[..., n, n//2+1]` complex → `[..., n, n]` real."""
        return jnp.fft.irfft2(field_hat, s=self.shape, axes=(-2, -1))

    def derivative_x(self, field_hat: jax.Array) -> jax.Array:
        """∂/∂x in spectral space: multiply by 2πi·kx."""
        return (2j * np.pi * self.wavenumbers[0]) * field_hat

    def derivative_y(self, field_hat: jax.Array) -> jax.Array:
        """∂/∂y in spectral space: multiply by 2πi·ky."""
        return (2j * np.pi * self.wavenumbers[1]) * field_hat

    def velocity_hat(self, omega_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(û, v̂) from ω̂ via the stream function: Δψ = −ω, u = ∂ψ/∂y, v = −∂ψ/∂x
        (arXiv 2408.02965)."""
        psi_hat = -self.inverse_laplacian * omega_hat
        return self.derivative_y(psi_hat), -self.derivative_x(psi_hat)

    def check_field(self, field: jax.Array | np.ndarray, name: str) -> None:
        """Raises ValueError unless `field` is a finite real `[..., n, n]` array on this grid.

        Under a jax trace only the shape and dtype can be checked.
        """
        shape = tuple(np.shape(field))
        if len(shape) < 2 or shape[-2:] != self.shape:
            raise ValueError(f"{name} must have shape [..., {self.size}, {self.size}], got {shape}")
        dtype = np.asarray(field).dtype if not isinstance(field, jax.Array) else field.dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"{name} must be a real floating-point array, got dtype {dtype}")
        if isinstance(field, jax.core.Tracer):  # under jit: shape and dtype only
            return
        if not bool(jnp.all(jnp.isfinite(jnp.asarray(field)))):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def random_real_field_hat(
    key: jax.Array,
    amplitudes: np.ndarray,
    grid: SpectralGrid,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """Spectral coefficients of Re(ifft2(b ⊙ ξ)), ξ_k i.i.d. standard complex normals (ξr + iξc).

    This is the construction of Lord–Powell–Shardlow's `get_twod_dW` and of the Gaussian random
    fields of the FNO papers. `amplitudes` b is given on the band |k_x|, |k_y| ≤ K as a centred
    `[2K+1, 2K+1]` array (index K ↔ k = 0) with K < n/2; modes outside the band are zero. Because
    the draw only touches that band, two grids of different sizes given the same key and the same
    physical amplitudes produce the same band-limited field sampled at their own points.

    With c = b ⊙ ξ, the full-plane coefficients of the real part are (c_k + conj(c_{−k}))/2, so
    E|ŵ_k|² = b_k² (both ξr and ξc have unit variance). Returns `[n, n//2+1]` complex.
    """
    band = amplitudes.shape[0]
    half = (band - 1) // 2
    if amplitudes.shape != (band, band) or band % 2 == 0:
        raise ValueError(
            f"amplitudes must be a centred square [2K+1, 2K+1] array, got {amplitudes.shape}"
        )
    if half >= grid.size // 2:
        raise ValueError(
            f"random-field band K={half} must be < n/2={grid.size // 2} for grid size {grid.size}"
        )
    real_dtype = jnp.dtype(dtype)
    key_r, key_i = jax.random.split(key)
    xi = jax.random.normal(key_r, (band, band), real_dtype) + 1j * jax.random.normal(
        key_i, (band, band), real_dtype
    )
    c = jnp.asarray(amplitudes, real_dtype) * xi
    hermitian = 0.5 * (c + jnp.conj(c[::-1, ::-1]))  # centred indexing: -k is the flipped index
    rows = np.arange(-half, half + 1) % grid.size
    out = jnp.zeros(grid.rfft_shape, hermitian.dtype)
    return out.at[rows[:, None], np.arange(half + 1)[None, :]].set(hermitian[:, half:])


def white_noise_hat(
    key: jax.Array, grid: SpectralGrid, dtype: jnp.dtype = jnp.float32
) -> jax.Array:
    """rfft2 of a field of i.i.d. standard normals on the grid, drawn directly in spectral space.

    For ξ_j i.i.d. N(0, 1) at the n² points, ξ̂ = rfft2(ξ) is a complex Gaussian vector with
    ξ̂_{−k} = conj(ξ̂_k), Re ξ̂_k and Im ξ̂_k independent N(0, n²/2) where k ≠ −k (mod n), and
    ξ̂_k real N(0, n²) at the four self-conjugate modes (k_x, k_y ∈ {0, n/2}). This draws
    Z = (a + ib)·n/√2 with a, b i.i.d. N(0, 1) on the whole `[n, n//2+1]` layout and replaces the
    columns k_y = 0 and k_y = n/2 (whose ±k_x partners are both stored) by (Z_k + conj Z_{−k})/√2,
    which has exactly that law; so `to_physical(white_noise_hat(…))` is distributed as i.i.d.
    N(0, 1) point values, without the forward transform (tests/physics/test_grid.py checks the
    covariance). Uses n(n + 2) normals (n² are the minimum). Returns `[n, n//2+1]` complex.
    """
    n = grid.size
    real_dtype = jnp.dtype(dtype)
    # drawn flat: threefry fills a flat array faster than one whose last axis is odd (n/2 + 1)
    count = 2 * grid.rfft_shape[0] * grid.rfft_shape[1]
    ab = jax.random.normal(key, (count,), real_dtype).reshape(2, *grid.rfft_shape)
    ab = ab * np.asarray(n / np.sqrt(2), real_dtype)
    z = jax.lax.complex(ab[0], ab[1])

    def hermitian(column: jax.Array) -> jax.Array:  # [n, 1]: row k_x ↔ row −k_x mod n
        partner = jnp.roll(column[::-1], 1, axis=0)
        return (column + jnp.conj(partner)) * np.asarray(1 / np.sqrt(2), real_dtype)

    return jnp.concatenate([hermitian(z[:, :1]), z[:, 1:-1], hermitian(z[:, -1:])], axis=1)


def band_wavenumbers(half: int, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Centred (kx, ky) meshes `[2K+1, 2K+1]` in cycles per unit length for |k| ≤ K."""
    k = np.arange(-half, half + 1) / length
    return np.meshgrid(k, k, indexing="ij")
