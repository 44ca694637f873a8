"""Batch chunking (closurejax.models.chunking): slices equal one call, the loop is really there,
the remainder is covered, and bad settings or arguments are refused."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.models import chunking


def per_sample(x: jax.Array, y: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """A per-sample function of a batched pytree (a reduction inside each sample)."""
    return {"sum": jnp.sum(x * y["w"], axis=(1, 2)), "field": jnp.tanh(x) + y["w"]}


@pytest.mark.parametrize("batch, chunk", [(7, 2), (8, 4), (5, 1), (6, 6), (3, 8), (4, None)])
def test_slices_equal_one_call(batch, chunk):
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, 4, 4))
    y = {"w": jax.random.normal(jax.random.PRNGKey(1), (batch, 4, 4))}
    out = jax.jit(lambda x, y: chunking.map_batch(per_sample, chunk, x, y))(x, y)
    expected = per_sample(x, y)
    assert out["sum"].shape == (batch,) and out["field"].shape == (batch, 4, 4)
    np.testing.assert_allclose(out["sum"], expected["sum"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["field"], expected["field"], rtol=1e-6, atol=1e-6)


def test_the_slices_run_in_one_loop_and_see_chunk_sized_batches():
    seen = []

    def fn(x: jax.Array) -> jax.Array:
        seen.append(x.shape[0])
        return 2 * x

    jaxpr = jax.make_jaxpr(lambda x: chunking.map_batch(fn, 3, x))(jnp.ones((10, 2)))
    assert sorted(seen) == [1, 3]  # 3 slices of 3 in the loop body, then the remainder of 1
    assert "scan" in str(jaxpr)
    seen.clear()
    jaxpr = jax.make_jaxpr(lambda x: chunking.map_batch(fn, None, x))(jnp.ones((10, 2)))
    assert seen == [10] and "scan" not in str(jaxpr)


def test_gradients_through_slices_equal_one_call():
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 3))
    x = jax.random.normal(jax.random.PRNGKey(3), (9, 3))

    def loss(w: jax.Array, chunk: int | None) -> jax.Array:
        return jnp.sum(chunking.map_batch(lambda v: jnp.sin(v @ w), chunk, x) ** 2)

    np.testing.assert_allclose(jax.grad(loss)(w, 4), jax.grad(loss)(w, None), rtol=1e-5)


def test_slices_are_rematerialised_under_grad_unless_turned_off():
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 3))
    x = jax.random.normal(jax.random.PRNGKey(3), (9, 3))

    def loss(w: jax.Array, remat: bool) -> jax.Array:
        out = chunking.map_batch(lambda v: jnp.sin(v @ w), 4, x, remat=remat)
        return jnp.sum(out**2)

    def rematerialised(remat: bool) -> bool:
        """Whether the loop body is a checkpoint (jax names its primitive "remat2")."""
        jaxpr = jax.make_jaxpr(lambda w: loss(w, remat))(w).jaxpr
        (scan,) = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
        names = [e.primitive.name for e in scan.params["jaxpr"].jaxpr.eqns]
        return any("remat" in n or "checkpoint" in n for n in names)

    assert rematerialised(True) and not rematerialised(False)
    np.testing.assert_allclose(
        jax.grad(loss)(w, True), jax.grad(loss)(w, False), rtol=1e-6, atol=1e-6
    )


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="leading batch axis"):
        chunking.map_batch(lambda a, b: a, 2, jnp.ones((4, 2)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="leading batch axis"):
        chunking.map_batch(lambda a: a, 2, jnp.float32(1.0))
    with pytest.raises(ValueError, match="at least one array"):
        chunking.map_batch(lambda: 0, 2)


@pytest.mark.parametrize("bad", [-1, 2.5, "big", True])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="batch_chunk=.*allowed: 'auto', None or 0"):
        chunking.check_chunk(bad)


def test_settings_resolve():
    assert chunking.check_chunk(0) is None and chunking.check_chunk(None) is None
    assert chunking.check_chunk("auto") == "auto" and chunking.check_chunk(3) == 3
    assert chunking.resolve_chunk(5, 10**9) == 5 and chunking.resolve_chunk(None, 1) is None


def test_auto_chunk_keeps_one_slice_activation_within_the_cache_budget():
    sample = 4 * 40 * 64 * 64  # P-CDM, one [40, 64, 64] float32 activation: 655 kB
    assert chunking.auto_chunk(sample, "cpu") == 4  # the measured best slice (module docstring)
    assert chunking.auto_chunk(4 * 20 * 64 * 64, "cpu") == 8  # paper A's width 20
    assert chunking.auto_chunk(4 * 40 * 128 * 128, "cpu") == 1  # one sample is 2.6 MB already
    assert chunking.auto_chunk(4 * 40 * 512 * 512, "cpu") == 1
    for size in (1, 1000, 12345, sample):
        k = chunking.auto_chunk(size, "cpu")
        assert k & (k - 1) == 0 and (k == 1 or k * size <= chunking.CACHE_BYTES)
        assert 2 * k * size > chunking.CACHE_BYTES
    assert chunking.auto_chunk(sample, "gpu") is None and chunking.auto_chunk(sample, "tpu") is None
    with pytest.raises(ValueError, match="bytes_per_sample"):
        chunking.auto_chunk(0, "cpu")


def scaled(params: dict[str, jax.Array], x: jax.Array, t: jax.Array) -> jax.Array:
    """A per-sample function of weights, a batch of fields [B, 4] and per-sample scales [B]."""
    return jnp.tanh(x @ params["w"]) * t[:, None]


def test_fold_vmap_runs_the_function_once_on_the_merged_batch():
    params = {"w": jax.random.normal(jax.random.PRNGKey(0), (4, 4))}
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 1, 4))  # 6 members, each a batch of one
    t = jnp.array([0.5])  # shared by all members (not mapped)
    seen = []

    def fn(p, x, t):
        seen.append(x.shape)
        return scaled(p, x, t)

    folded = chunking.fold_vmap(fn)
    vmapped = jax.vmap(folded, in_axes=(None, 0, None))
    out = jax.jit(vmapped)(params, x, t)
    assert seen[-1] == (6, 4)  # traced per member for its shapes, then run on the merged batch
    dots = [
        line for line in str(jax.make_jaxpr(vmapped)(params, x, t)).splitlines() if "dot" in line
    ]
    assert len(dots) == 1 and "f32[6,4] = dot_general" in dots[0]  # not a vmapped [6, 1, 4] dot
    expected = jax.vmap(scaled, in_axes=(None, 0, None))(params, x, t)
    assert out.shape == (6, 1, 4)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    # nested vmaps fold too, and an unmapped call is the plain function
    nested = jax.vmap(jax.vmap(folded, in_axes=(None, 0, 0)), in_axes=(None, 0, None))
    xs, ts = x.reshape(2, 3, 1, 4), jnp.linspace(0.1, 1.0, 3)[:, None]
    np.testing.assert_allclose(
        nested(params, xs, ts),
        scaled(params, x[:, 0], jnp.tile(ts[:, 0], 2)).reshape(2, 3, 1, 4),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_array_equal(folded(params, x[0], t), scaled(params, x[0], t))


def test_fold_vmap_with_mapped_weights_falls_back_to_vmap():
    stacked = {"w": jax.random.normal(jax.random.PRNGKey(2), (3, 4, 4))}
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    t = jnp.linspace(0.5, 1.0, 5)
    out = jax.vmap(chunking.fold_vmap(scaled), in_axes=(0, None, None))(stacked, x, t)
    expected = jax.vmap(scaled, in_axes=(0, None, None))(stacked, x, t)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
