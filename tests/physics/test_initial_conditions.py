"""Gaussian random fields: spectrum, mean, determinism, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.physics import initial_conditions as ic
from closurejax.physics.grid import SpectralGrid


def test_grf_has_the_covariance_spectrum_and_zero_mean():
    n = 32
    keys = jax.random.split(jax.random.PRNGKey(0), 3000)
    fields = jax.jit(jax.vmap(lambda k: ic.gaussian_random_field(k, n)))(keys)
    assert fields.shape == (3000, n, n) and fields.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(jnp.mean(fields, axis=(-2, -1))), 0.0, atol=1e-6)
    power = np.mean(np.abs(np.fft.rfft2(np.asarray(fields, np.float64))) ** 2, axis=0)
    amp = ic.grf_amplitudes(SpectralGrid(n), 2.5, 7.0)  # centred [n-1, n-1]
    half = n // 2 - 1
    for kx, ky in [(1, 0), (0, 3), (2, 5), (-4, 7), (9, 9)]:
        assert abs(power[kx % n, ky] / amp[kx + half, ky + half] ** 2 - 1) < 0.15, (kx, ky)


def test_grf_is_deterministic_per_key():
    a = ic.gaussian_random_field(jax.random.PRNGKey(1), 16)
    b = ic.gaussian_random_field(jax.random.PRNGKey(1), 16)
    c = ic.gaussian_random_field(jax.random.PRNGKey(2), 16)
    assert np.array_equal(a, b) and not np.allclose(a, c)


@pytest.mark.parametrize("kw, field", [({"alpha": 1.0}, "alpha"), ({"tau": 0.0}, "tau")])
def test_grf_rejects_bad_parameters(kw, field):
    with pytest.raises(ValueError, match=field):
        ic.gaussian_random_field(jax.random.PRNGKey(0), 16, **kw)
