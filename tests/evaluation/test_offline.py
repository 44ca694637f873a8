"""`closurejax.evaluation.offline.evaluate_denoiser` against the Bayes-optimal denoiser of
Gaussian data, whose error is known in closed form."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.diffusion.sde import SDE, VESDE, VPSDE
from closurejax.evaluation import offline

S_D, MEAN, STD = 0.3, 0.5, 2.0  # x_0 ~ N(0, S_D²) per pixel; physical target = MEAN + STD x_0


@dataclasses.dataclass(frozen=True)
class ExactGaussian:
    """A duck-typed score model with the exact score of x_t for x_0 ~ N(0, S_D²) per pixel:
    −x / (α² S_D² + σ²), and the target normalised as (H − MEAN) / STD."""

    sde: SDE
    condition_names: tuple[str, ...] = ("omega",)

    def encode(self, params: Any, cond: dict) -> None:
        return None

    def score_fn(self, params: Any, features: Any):
        def score(x: jax.Array, t: jax.Array) -> jax.Array:
            alpha, sigma = self.sde.marginal(t)
            return -x / (alpha**2 * S_D**2 + sigma**2)[:, None, None]

        return score

    def normalise(self, name: str, field: jax.Array) -> jax.Array:
        return (field - MEAN) / STD

    def denormalise(self, name: str, field: jax.Array) -> jax.Array:
        return field * STD + MEAN


@pytest.mark.parametrize("sde", [VESDE(26.0), VPSDE()], ids=["ve", "vp"])
def test_denoiser_error_of_the_exact_gaussian_score_is_the_posterior_spread(sde: SDE) -> None:
    """D = E[x_0 | x_t] has error variance S_D² σ² / (α² S_D² + σ²) per pixel, so the relative
    error in physical units is STD · sqrt(that) / sqrt(MEAN² + STD² S_D²)."""
    n, count = 32, 12
    x0 = S_D * jax.random.normal(jax.random.PRNGKey(0), (count, n, n))
    fields = {"target": np.asarray(MEAN + STD * x0), "omega": np.zeros((count, n, n))}
    times = [1e-3, 0.05, 0.3, 1.0]
    out = offline.evaluate_denoiser(
        ExactGaussian(sde), None, fields, times, jax.random.PRNGKey(1), batch_size=5
    )
    alpha, sigma = (np.asarray(a) for a in sde.marginal(jnp.asarray(times)))
    posterior = S_D**2 * sigma**2 / (alpha**2 * S_D**2 + sigma**2)
    expected = STD * np.sqrt(posterior) / np.sqrt(MEAN**2 + STD**2 * S_D**2)
    np.testing.assert_allclose(out["rel_error"], expected, rtol=0.05)
    np.testing.assert_allclose(out["sigma"], sigma / alpha, rtol=1e-5)
    assert out["t"] == times
    assert out["rel_error"][0] < 0.1 < out["rel_error"][-1]  # the levels really differ


def test_denoiser_error_refuses_times_outside_the_diffusion() -> None:
    fields = {"target": np.zeros((2, 8, 8)), "omega": np.zeros((2, 8, 8))}
    for times in ([], [0.0, 0.1], [1.5]):
        with pytest.raises(ValueError, match=r"^times must be a non-empty list of values in"):
            offline.evaluate_denoiser(
                ExactGaussian(VESDE()), None, fields, times, jax.random.PRNGKey(0)
            )
