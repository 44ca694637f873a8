"""Array helpers the model tests share: parameters without compiling Flax's initialisers, and a
closeness check relative to the reference's scale."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def random_params(model: Any, n: int, scale: float = 0.3, seed: int = 0) -> Any:
    """Parameters shaped like `model.init(key, n)` (`jax.eval_shape`, nothing compiled), drawn
    N(0, scale²) with NumPy: compiling Flax's initialisers would cost more than the tests."""
    shapes = jax.eval_shape(lambda k: model.init(k, n), jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes
    )


def assert_close(actual: Any, expected: Any, tol: float = 2e-5) -> None:
    """|actual − expected| ≤ tol · max|expected| elementwise (float rounding of another order
    of operations, e.g. other batch slices)."""
    scale = float(jnp.abs(expected).max())
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=0, atol=tol * scale)
