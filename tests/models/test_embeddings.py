"""Tests for closurejax.models.embeddings (arXiv 2408.02965, the score network: Gaussian Fourier
projection of the diffusion time, 256 features at scale 30)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.models.embeddings import GaussianFourierProjection, gaussian_fourier_frequencies


def test_shape_dtype_and_formula() -> None:
    module = GaussianFourierProjection(embed_dim=256, scale=30.0)
    t = jnp.array([1e-3, 0.1, 0.4, 2.0], dtype=jnp.float32)
    variables = module.init(jax.random.key(0), t)
    out = module.apply(variables, t)
    assert out.shape == (4, 256)
    assert out.dtype == jnp.float32
    w = gaussian_fourier_frequencies(256, 30.0)
    angle = 2 * np.pi * np.asarray(t, np.float64)[:, None] * w[None, :]
    expected = np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)
    np.testing.assert_allclose(np.asarray(out), expected, atol=2e-4)
    # Each (sin, cos) pair lies on the unit circle.
    np.testing.assert_allclose(out[:, :128] ** 2 + out[:, 128:] ** 2, 1.0, atol=1e-5)


def test_frequencies_are_gaussian_with_the_given_scale() -> None:
    w = gaussian_fourier_frequencies(4096, scale=30.0)
    assert w.shape == (2048,)
    assert w.dtype == np.float32
    assert abs(np.std(w) / 30.0 - 1.0) < 0.05
    assert abs(np.mean(w)) < 3 * 30.0 / np.sqrt(2048)
    assert not w.flags.writeable
    other_seed = gaussian_fourier_frequencies(4096, scale=30.0, seed=1)
    assert not np.allclose(w, other_seed)


def test_deterministic_across_inits_and_has_no_parameters() -> None:
    module = GaussianFourierProjection(embed_dim=16)
    t = jnp.linspace(0.0, 1.0, 5)
    v0 = module.init(jax.random.key(0), t)
    v1 = module.init(jax.random.key(123), t)
    assert jax.tree_util.tree_leaves(v0) == []
    np.testing.assert_array_equal(module.apply(v0, t), module.apply(v1, t))
    np.testing.assert_array_equal(module.apply(v0, t), GaussianFourierProjection(16).apply({}, t))


def test_distinct_times_give_distinct_embeddings() -> None:
    module = GaussianFourierProjection(embed_dim=64)
    t = jnp.array([0.0, 1e-3, 2e-3, 0.1, 0.4, 1.0])
    out = np.asarray(module.apply({}, t))
    distances = np.linalg.norm(out[:, None] - out[None, :], axis=-1)
    off_diagonal = distances[~np.eye(len(t), dtype=bool)]
    assert off_diagonal.min() > 0.1


def test_scalar_time_is_a_batch_of_one() -> None:
    module = GaussianFourierProjection(embed_dim=8)
    np.testing.assert_array_equal(
        module.apply({}, jnp.float32(0.3)), module.apply({}, jnp.array([0.3]))
    )


class _Embedder(nn.Module):
    """Gaussian Fourier features followed by a trainable dense layer (as in the score net)."""

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        return nn.Dense(3)(GaussianFourierProjection(embed_dim=32)(t))


def test_frequencies_receive_no_gradient_and_no_update() -> None:
    model = _Embedder()
    t = jnp.array([0.1, 0.5])
    params = model.init(jax.random.key(0, impl="rbg"), t)["params"]
    # Only the dense layer is trainable: the projection contributes no leaf to the parameters.
    assert set(params) == {"Dense_0"}

    def loss(p: dict) -> jax.Array:
        return jnp.sum(model.apply({"params": p}, t) ** 2)

    grads = jax.grad(loss)(params)
    assert set(grads) == {"Dense_0"}
    assert float(jnp.abs(grads["Dense_0"]["kernel"]).max()) > 0.0


@pytest.mark.parametrize("embed_dim", [0, 7, -4])
def test_invalid_embed_dim(embed_dim: int) -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        GaussianFourierProjection(embed_dim=embed_dim).apply({}, jnp.ones(2))


def test_invalid_scale_and_time_shape() -> None:
    with pytest.raises(ValueError, match="scale"):
        GaussianFourierProjection(embed_dim=8, scale=0.0).apply({}, jnp.ones(2))
    with pytest.raises(ValueError, match="t must have shape"):
        GaussianFourierProjection(embed_dim=8).apply({}, jnp.ones((2, 3)))
