"""Noise-level embeddings for score networks.

The conditional score network of papers A and B (arXiv 2408.02965, the score
network) embeds the diffusion time ``t`` with a Gaussian Fourier projection of 256 (paper
A) or 512 (paper B, P-CDM) features at scale 30,

    gamma(t) = [sin(2 pi W t), cos(2 pi W t)],    W_j ~ N(0, scale^2),  j = 1 .. embed_dim / 2,

followed by a dense layer and a SiLU (that part lives in :mod:`closurejax.models.fno`). The random
frequencies ``W`` are fixed: they are drawn once and never trained (Tancik et al. 2020, "Fourier
features let networks learn high frequency functions"; Song et al. 2021, score SDE).

How "fixed" is implemented here: ``W`` is *not* a Flax variable at all. It is a NumPy constant
drawn from ``numpy.random.RandomState(seed)`` (whose stream NumPy guarantees never to change) and
baked into the traced computation. Consequences:

* the module has no parameters, so no optimiser can touch ``W`` — not even through decoupled
  weight decay (AdamW), which would shrink a "frozen" parameter whose gradient is merely zero;
* the embedding is deterministic, identical across initialisations, processes and devices, and
  checkpoints need not store it;
* a different set of frequencies is obtained by changing ``seed``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["GaussianFourierProjection", "gaussian_fourier_frequencies"]


@functools.lru_cache(maxsize=32)
def _frequencies(half_dim: int, scale: float, seed: int) -> np.ndarray:
    """Cached ``[half_dim]`` float32 frequencies ``scale * N(0, 1)`` from ``RandomState(seed)``."""
    rng = np.random.RandomState(seed)  # noqa: NPY002 - legacy generator: its stream is frozen
    frequencies = (scale * rng.standard_normal(half_dim)).astype(np.float32)
    frequencies.setflags(write=False)
    return frequencies


def gaussian_fourier_frequencies(embed_dim: int, scale: float = 30.0, seed: int = 0) -> np.ndarray:
    """The fixed frequencies ``W`` of :class:`GaussianFourierProjection`.

    Args:
        embed_dim: number of output features (even, positive); ``W`` has ``embed_dim // 2``
            entries.
        scale: standard deviation of the frequencies (papers A and B: 30).
        seed: seed of the NumPy ``RandomState`` the frequencies are drawn from.

    Returns:
        Read-only float32 array ``[embed_dim // 2]``.

    Raises:
        ValueError: if ``embed_dim`` is not a positive even integer or ``scale`` is not positive
            and finite.
    """
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int | np.integer):
        raise ValueError(f"embed_dim must be a positive even integer, got {embed_dim!r}")
    if embed_dim <= 0 or embed_dim % 2:
        raise ValueError(f"embed_dim must be a positive even integer, got {embed_dim}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    return _frequencies(int(embed_dim) // 2, float(scale), int(seed))


class GaussianFourierProjection(nn.Module):
    """Fixed Gaussian random Fourier features of the diffusion time (papers A and B).

    ``t [batch] -> [batch, embed_dim]`` with features ``[sin(2 pi W t), cos(2 pi W t)]`` (all sines
    first, then all cosines), ``W [embed_dim // 2]`` from :func:`gaussian_fourier_frequencies`.
    The module holds no variables (see the module docstring for why): ``init`` returns an empty
    ``params`` collection and gradients never reach ``W``.

    Attributes:
        embed_dim: number of output features (even; papers: 256, paper B's P-CDM: 512).
        scale: standard deviation of ``W`` (papers: 30).
        seed: seed of the NumPy ``RandomState`` that draws ``W``.
    """

    embed_dim: int
    scale: float = 30.0
    seed: int = 0

    @property
    def frequencies(self) -> np.ndarray:
        """The fixed frequencies ``W``, float32 ``[embed_dim // 2]``."""
        return gaussian_fourier_frequencies(self.embed_dim, self.scale, self.seed)

    def __call__(self, t: jax.Array) -> jax.Array:
        """Embed ``t``.

        Args:
            t: diffusion times, ``[batch]`` (a scalar is treated as ``[1]``).

        Returns:
            ``[batch, embed_dim]`` features in the dtype of ``t`` promoted to float.

        Raises:
            ValueError: if ``t`` has more than one dimension.
        """
        t = jnp.asarray(t)
        if t.ndim > 1:
            raise ValueError(f"t must have shape [batch], got shape {t.shape}")
        t = jnp.atleast_1d(t)
        if not jnp.issubdtype(t.dtype, jnp.floating):
            t = t.astype(jnp.float32)
        w = jnp.asarray(self.frequencies, dtype=t.dtype)
        angle = (2.0 * np.pi) * t[:, None] * w[None, :]
        return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)
