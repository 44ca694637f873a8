"""Tests for closurejax.models.autoencoder (paper B's L-CDM autoencoder).

Architecture: arXiv 2506.20771 (Conv3x3 -> ResBlocks with stride-2
convolutions -> self-attention -> Conv3x3 -> 1-channel latent; mirrored decoder; ~9 M parameters).

Cost on the 2-core CPU is dominated by XLA compilation, so the tests compile few programs: shapes
are checked with ``jax.eval_shape``, parameters are initialised once (with the ``rbg`` PRNG, which
compiles ~3x faster than threefry), and concrete forward passes share one jitted function and one
batch size (``BATCH``), stacking the variants a test compares along the batch axis.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from closurejax.models.autoencoder import (
    Autoencoder,
    Decoder,
    Encoder,
    ResBlock,
    SelfAttention,
    depth_to_space,
    group_count,
    space_to_depth,
)
from closurejax.models.fno import count_params

N = 16
BATCH = 8
TINY = Autoencoder(channels=(8, 16, 16), latent_channels=1, num_heads=4, groups=4)


@pytest.fixture(scope="module")
def tiny() -> tuple[dict, Callable]:
    """Variables of :data:`TINY` (16^2 -> 4^2, with attention) and its jitted ``apply``."""
    variables = jax.jit(TINY.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, N, N)))
    return variables, jax.jit(TINY.apply)


def _noise(seed: int, batch: int = BATCH) -> jax.Array:
    """Random test fields ``[batch, N, N]`` (float32)."""
    return jax.random.normal(jax.random.key(seed), (batch, N, N), jnp.float32)


def _family(key: jax.Array, batch: int) -> jax.Array:
    """Fields ``a sin(2 pi x) + b cos(2 pi y)``, ``a, b ~ N(0, 1)``: ``[batch, N, N]``."""
    grid = jnp.arange(N) / N
    a, b = jax.random.normal(key, (2, batch, 1, 1))
    return a * jnp.sin(2 * jnp.pi * grid)[:, None] + b * jnp.cos(2 * jnp.pi * grid)[None, :]


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_shapes_and_dtypes(tiny: tuple[dict, Callable], batch: int) -> None:
    variables, _ = tiny
    x = jax.ShapeDtypeStruct((batch, N, N), jnp.float32)
    x_hat, z = jax.eval_shape(TINY.apply, variables, x)
    assert (z.shape, z.dtype) == ((batch, 4, 4, 1), jnp.float32)
    assert (x_hat.shape, x_hat.dtype) == ((batch, N, N), jnp.float32)
    z2 = jax.eval_shape(lambda v, x: TINY.apply(v, x, method=Autoencoder.encode), variables, x)
    assert (z2.shape, z2.dtype) == ((batch, 4, 4, 1), jnp.float32)
    y = jax.eval_shape(lambda v, z: TINY.apply(v, z, method=Autoencoder.decode), variables, z2)
    assert (y.shape, y.dtype) == ((batch, N, N), jnp.float32)
    assert TINY.latent_shape((batch, N, N)) == (batch, 4, 4, 1)
    # Integer fields are cast to float32.
    xi = jax.ShapeDtypeStruct((batch, N, N), jnp.int32)
    assert jax.eval_shape(TINY.apply, variables, xi)[0].dtype == jnp.float32


def test_encode_decode_methods_match_call(tiny: tuple[dict, Callable]) -> None:
    variables, forward = tiny
    x = _noise(1)
    x_hat, z = forward(variables, x)

    @jax.jit
    def roundtrip(variables: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        z = TINY.apply(variables, x, method=Autoencoder.encode)
        return TINY.apply(variables, z, method=Autoencoder.decode), z

    x_hat2, z2 = roundtrip(variables, x)
    np.testing.assert_allclose(z2, z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x_hat2, x_hat, rtol=1e-5, atol=1e-6)
    assert np.std(np.asarray(z)) > 0 and np.std(np.asarray(x_hat)) > 0


@pytest.mark.parametrize(
    ("channels", "n", "m"), [((8,), 8, 8), ((8, 8), 8, 4), ((8, 8, 8, 8), 16, 2)]
)
def test_latent_size_per_number_of_levels(channels: tuple[int, ...], n: int, m: int) -> None:
    """The latent is n / 2^(len(channels) - 1) per side, with latent_channels channels."""
    model = Autoencoder(channels=channels, latent_channels=3, attention=False, groups=4)
    x = jax.ShapeDtypeStruct((2, n, n), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(1), x)
    x_hat, z = jax.eval_shape(model.apply, variables, x)
    assert z.shape == (2, m, m, 3) and x_hat.shape == (2, n, n)
    assert model.downsampling_factor == n // m
    assert count_params(variables["params"]["encoder"]) > 0


def test_paper_b_parameter_count() -> None:
    """Paper B's default autoencoder, measured without materialising it (~9 M published)."""
    model = Autoencoder()
    x = jax.ShapeDtypeStruct((1, 64, 64), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    params = variables["params"]
    assert count_params(params["encoder"]) == 4_516_353
    assert count_params(params["decoder"]) == 4_475_009
    assert count_params(params) == 8_991_362
    assert abs(count_params(params) - 9e6) / 9e6 < 0.01
    # 8 heads over 256 channels: q, k, v, out projections of 256 x 256 (+ biases).
    attention = params["encoder"]["mid_attention"]["attention"]
    assert attention["query"]["kernel"].shape == (256, 8, 32)
    decoder = params["decoder"]
    assert decoder["up_1_block_0"]["conv_0"]["kernel"].shape == (3, 3, 256, 256)
    assert decoder["up_1_upsample"]["conv"]["kernel"].shape == (3, 3, 256, 128)
    assert decoder["conv_out"]["kernel"].shape == (3, 3, 64, 1)
    x_hat, z = jax.eval_shape(model.apply, variables, x)
    assert z.shape == (1, 16, 16, 1) and x_hat.shape == (1, 64, 64)


def test_resblock_skip_and_groups() -> None:
    x = jax.ShapeDtypeStruct((2, 4, 4, 8), jnp.float32)
    key = jax.random.key(0)
    params = jax.eval_shape(ResBlock(16, groups=4).init, key, x)["params"]
    assert params["skip"]["kernel"].shape == (1, 1, 8, 16)
    assert params["conv_0"]["kernel"].shape == (3, 3, 8, 16)
    assert "skip" not in jax.eval_shape(ResBlock(8, groups=4).init, key, x)["params"]
    assert group_count(32, 8) == 8 and group_count(32, 64) == 32
    with pytest.raises(ValueError, match="do not divide 48 channels"):
        group_count(32, 48)
    with pytest.raises(ValueError, match="do not divide 12 channels"):
        jax.eval_shape(ResBlock(12, groups=8).init, key, x)
    with pytest.raises(ValueError, match="num_heads=3 must divide"):
        jax.eval_shape(SelfAttention(num_heads=3, groups=4).init, key, x)
    with pytest.raises(ValueError, match="num_heads=8 must divide"):
        jax.eval_shape(Autoencoder(channels=(8, 12), groups=4).init, key, jnp.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="channels must be a non-empty"):
        jax.eval_shape(Autoencoder(channels=()).init, key, jnp.zeros((1, 8, 8)))


def test_validation_errors(tiny: tuple[dict, Callable]) -> None:
    variables, forward = tiny
    with pytest.raises(
        ValueError, match=r"\(2, 18, 18\).*divisible by 2\^\(len\(channels\) - 1\) = 4"
    ):
        TINY.apply(variables, jnp.zeros((2, 18, 18)))
    with pytest.raises(ValueError, match="square field"):
        TINY.apply(variables, jnp.zeros((2, 16, 8)))
    with pytest.raises(ValueError, match="square field"):
        TINY.apply(variables, jnp.zeros((16, 16)))
    bad = _noise(2).at[1, 3, 4].set(jnp.nan)
    with pytest.raises(ValueError, match="x contains non-finite"):
        TINY.apply(variables, bad)
    with pytest.raises(ValueError, match="z contains non-finite"):
        TINY.apply(variables, jnp.full((1, 4, 4, 1), jnp.inf), method=Autoencoder.decode)
    with pytest.raises(ValueError, match="latent_channels=1"):
        TINY.apply(variables, jnp.zeros((1, 4, 4, 2)), method=Autoencoder.decode)
    # Under jit the (static) shape check still runs; the finiteness check is skipped.
    with pytest.raises(ValueError, match="divisible"):
        forward(variables, jnp.zeros((1, 10, 10)))
    x_hat, z = forward(variables, bad)
    assert not np.all(np.isfinite(np.asarray(z)))


def test_periodic_shift_equivariance(tiny: tuple[dict, Callable]) -> None:
    """Circular padding, stride-2 sampling at even pixels, GroupNorm over the whole domain and
    position-free attention: shifting the field by 4 pixels shifts the latent by exactly 1, and
    the decoder maps that latent shift back to a 4-pixel shift of the reconstruction."""
    variables, forward = tiny
    x = _noise(4, 2)
    shifts = [(0, 0), (4, 0), (8, -4), (2, 0)]
    stacked = jnp.concatenate([jnp.roll(x, s, axis=(1, 2)) for s in shifts])  # [BATCH, N, N]
    x_hat, z = forward(variables, stacked)
    x_hat, z = x_hat.reshape(4, 2, N, N), z.reshape(4, 2, 4, 4, 1)
    for i, (sx, sy) in enumerate(shifts[1:3], start=1):
        expected_z = jnp.roll(z[0], (sx // 4, sy // 4), axis=(1, 2))
        np.testing.assert_allclose(z[i], expected_z, rtol=1e-4, atol=1e-5)
        expected_x = jnp.roll(x_hat[0], (sx, sy), axis=(1, 2))
        np.testing.assert_allclose(x_hat[i], expected_x, rtol=1e-4, atol=1e-5)
    # A 2-pixel shift is not a latent-grid shift: the latent is neither unchanged nor rolled.
    assert not np.allclose(z[3], z[0], atol=1e-3)
    assert not np.allclose(z[3], jnp.roll(z[0], 1, axis=1), atol=1e-3)


def test_encoder_decoder_standalone() -> None:
    kwargs = dict(channels=(8, 16), latent_channels=2, num_heads=2, groups=4)
    x = jax.ShapeDtypeStruct((5, 8, 8), jnp.float32)
    z = jax.eval_shape(lambda x: Encoder(**kwargs).init_with_output(jax.random.key(0), x)[0], x)
    assert z.shape == (5, 4, 4, 2)
    y = jax.eval_shape(lambda z: Decoder(**kwargs).init_with_output(jax.random.key(0), z)[0], z)
    assert y.shape == (5, 8, 8)


def test_learns_to_reconstruct_low_dimensional_family(tiny: tuple[dict, Callable]) -> None:
    """Fields a sin(2 pi x) + b cos(2 pi y) (two degrees of freedom) are reconstructed to < 10 %
    relative L2 error after 150 Adam steps on the tiny autoencoder (16^2 -> 4^2 latent)."""
    variables, forward = tiny
    params = variables["params"]
    optimizer = optax.adam(3e-3)

    @jax.jit
    def step(params: dict, opt_state: optax.OptState, key: jax.Array):
        x = _family(key, 16)

        def loss_fn(p: dict) -> jax.Array:
            return jnp.mean((TINY.apply({"params": p}, x)[0] - x) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    def rel_error(params: dict, x: jax.Array) -> float:
        x_hat, _ = forward({"params": params}, x)
        return float(jnp.sqrt(jnp.sum((x_hat - x) ** 2) / jnp.sum(x**2)))

    x_test = _family(jax.random.key(123), BATCH)
    initial = rel_error(params, x_test)
    opt_state = optimizer.init(params)
    losses = []
    for key in jax.random.split(jax.random.key(7), 150):
        params, opt_state, loss = step(params, opt_state, key)
        losses.append(float(loss))
    final = rel_error(params, x_test)
    assert np.all(np.isfinite(losses))
    assert final < 0.1, (initial, final)
    assert final < 0.2 * initial, (initial, final)


# --------------------------------------------------------------------------------------------------
# Cost-designed variants (closurejax issue 11): stems, levels without ResBlocks, latent size
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "m", "params"),
    [
        (dict(channels=(64, 128), stem="space_to_depth", stem_factor=2), 16, 2_070_021),
        (dict(channels=(64, 128), stem="space_to_depth", stem_factor=4), 8, 2_083_857),
        (dict(channels=(128,), stem="strided", stem_factor=4), 16, 1_343_121),
        (dict(channels=(32, 64, 128), num_res_blocks=0, attention=False), 16, 1_370_690),
    ],
)
def test_cost_variants_latent_sizes_at_64(kwargs: dict, m: int, params: int) -> None:
    """64^2 -> 16^2 or 8^2 latents with a stem and/or fewer levels (shapes only, no init)."""
    model = Autoencoder(**kwargs)
    x = jax.ShapeDtypeStruct((3, 64, 64), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    x_hat, z = jax.eval_shape(model.apply, variables, x)
    assert z.shape == (3, m, m, 1) and x_hat.shape == (3, 64, 64)
    assert model.downsampling_factor == 64 // m
    assert count_params(variables["params"]) == params


def test_space_to_depth_round_trip_and_block_layout() -> None:
    x = jnp.arange(2 * 8 * 8, dtype=jnp.float32).reshape(2, 8, 8)
    y = space_to_depth(x, 4)
    assert y.shape == (2, 2, 2, 16)
    np.testing.assert_array_equal(y[1, 1, 0], x[1, 4:8, 0:4].reshape(-1))  # block (1, 0)
    np.testing.assert_array_equal(depth_to_space(y, 4), x)
    # a shift by the factor is a shift by one block
    np.testing.assert_array_equal(space_to_depth(jnp.roll(x, 4, axis=2), 4), jnp.roll(y, 1, axis=2))
    with pytest.raises(ValueError, match="divisible by 4"):
        space_to_depth(jnp.zeros((1, 6, 6)), 4)
    with pytest.raises(ValueError, match=r"\[batch, m, m, 4\]"):
        depth_to_space(jnp.zeros((1, 2, 2, 3)), 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(channels=(8, 16), stem="space_to_depth", stem_factor=2, num_heads=4, groups=4),
        dict(channels=(8,), stem="strided", stem_factor=4, num_heads=4, groups=4),
        dict(channels=(8, 8, 16), num_res_blocks=0, attention=False, groups=4),
    ],
    ids=["space_to_depth_2", "strided_4", "no_resblocks"],
)
def test_cost_variants_are_periodic_shift_equivariant(kwargs: dict) -> None:
    """As `test_periodic_shift_equivariance` for the default: every variant maps 16^2 to 4^2
    (factor 4), a 4-pixel field shift is a 1-pixel latent shift and the decoder maps it back;
    a 2-pixel shift is not a latent-grid shift."""
    model = Autoencoder(**kwargs)
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, N, N)))
    assert model.downsampling_factor == 4
    x = _noise(5, 2)
    shifts = [(0, 0), (4, 0), (8, -4), (2, 0)]
    stacked = jnp.concatenate([jnp.roll(x, s, axis=(1, 2)) for s in shifts])  # [BATCH, N, N]
    x_hat, z = jax.jit(model.apply)(variables, stacked)
    x_hat, z = x_hat.reshape(4, 2, N, N), z.reshape(4, 2, 4, 4, 1)
    for i, (sx, sy) in enumerate(shifts[1:3], start=1):
        np.testing.assert_allclose(
            z[i], jnp.roll(z[0], (sx // 4, sy // 4), axis=(1, 2)), rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            x_hat[i], jnp.roll(x_hat[0], (sx, sy), axis=(1, 2)), rtol=1e-4, atol=1e-5
        )
    assert not np.allclose(z[3], z[0], atol=1e-3)
    assert not np.allclose(z[3], jnp.roll(z[0], 1, axis=1), atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(stem="pixel_shuffle"), "stem='pixel_shuffle' is invalid; allowed: .*space_to_depth"),
        (dict(stem_factor=2), "stem_factor=2 is invalid for stem='conv'; allowed: 1"),
        (dict(stem="strided", stem_factor=1), "stem_factor=1 is invalid for stem='strided'"),
        (dict(num_res_blocks=-1), "num_res_blocks must be an integer >= 0, got -1"),
    ],
)
def test_cost_variant_validation(kwargs: dict, match: str) -> None:
    model = Autoencoder(**{"channels": (8, 16), "groups": 4, "num_heads": 4, **kwargs})
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16)))


def test_stem_grid_must_divide() -> None:
    model = Autoencoder(
        channels=(8, 16), stem="space_to_depth", stem_factor=4, num_heads=4, groups=4
    )
    with pytest.raises(ValueError, match=r"stem_factor=4 \* 2\^\(len\(channels\) - 1\) = 8"):
        model.latent_shape((1, 12, 12))
    assert model.latent_shape((1, 16, 16)) == (1, 2, 2, 1)
