"""Tests for closurejax.models.fno and closurejax.models.flops.

The architecture is the conditional FNO score network of papers A and B
(arXiv 2408.02965, the score network, and paper B's P-CDM line).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.models.flops import (
    dense_flops,
    fft2_flops,
    fno_flops_breakdown,
    fno_forward_flops,
    matmul_rate,
    spectral_conv_flops,
)
from closurejax.models.fno import (
    ConditionalFNO,
    DeterministicFNO,
    FNOBlock,
    FNOBranch,
    FusionHead,
    SpectralConv2d,
    _gelu,
    count_params,
)
from closurejax.models.spectral import (
    grid_coordinates,
    resolve_spectral_method,
    spectral_conv_dft,
    spectral_conv_fft,
)


def _numpy_spectral_conv(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Reference FNO spectral convolution with ``np.fft`` (Li et al. 2021).

    ``x [batch, nx, ny, in]`` real, ``weight [in, out, 2m, m]`` complex (rows: kx = 0..m-1 then
    nx-m..nx-1) -> ``[batch, nx, ny, out]``.
    """
    batch, nx, ny, _ = x.shape
    c_out, m = weight.shape[1], weight.shape[3]
    x_hat = np.fft.rfft2(x, axes=(1, 2))
    out = np.zeros((batch, nx, ny // 2 + 1, c_out), dtype=complex)
    out[:, :m, :m] = np.einsum("bxyi,ioxy->bxyo", x_hat[:, :m, :m], weight[:, :, :m])
    out[:, nx - m :, :m] = np.einsum("bxyi,ioxy->bxyo", x_hat[:, nx - m :, :m], weight[:, :, m:])
    return np.fft.irfft2(out, s=(nx, ny), axes=(1, 2))


def _complex_kernel(kernel: np.ndarray) -> np.ndarray:
    """``[in, out, 2m, m, 2]`` (real, imag) -> complex ``[in, out, 2m, m]``."""
    kernel = np.asarray(kernel, dtype=np.float64)
    return kernel[..., 0] + 1j * kernel[..., 1]


def _smooth_field(n: int, phase: float = 0.0) -> np.ndarray:
    """A band-limited ``[n, n]`` field on ``x_i = i / n`` (modes |k| <= 2)."""
    x = np.arange(n) / n
    gx, gy = np.meshgrid(x, x, indexing="ij")
    field = np.sin(2 * np.pi * gx + phase) * np.cos(4 * np.pi * gy)
    return (field + 0.5 * np.cos(2 * np.pi * (gx + gy) - phase)).astype(np.float32)


def _normal(rng: np.random.Generator, *shape: int, dtype=np.float32) -> jax.Array:
    """Standard normal array drawn with NumPy (no per-shape XLA compilation, unlike jax.random)."""
    return jnp.asarray(rng.standard_normal(shape).astype(dtype))


def _tiny_model(**kwargs) -> ConditionalFNO:
    defaults = dict(width=6, modes=3, depth=2, embed_dim=8, mlp_width=8)
    defaults.update(kwargs)
    return ConditionalFNO(**defaults)


def _inputs(batch: int, n: int, names=("omega",), seed: int = 0):
    rng = np.random.default_rng(seed)
    x = _normal(rng, batch, n, n)
    cond = {name: _normal(rng, batch, n, n) for name in names}
    t = jnp.asarray(np.linspace(0.05, 0.9, batch, dtype=np.float32))
    return x, t, cond


def _random_variables(model, *args, seed: int = 0) -> dict:
    """Variables with the shapes of ``model.init(key, *args)``, filled without compiling init."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), shapes
    )


class _Tiny:
    """A tiny two-condition score network, initialised once, with jitted entry points."""

    names = ("omega", "sparse")

    def __init__(self) -> None:
        self.model = _tiny_model(condition_names=self.names, spectral_method="dft")
        self.x, self.t, self.cond = _inputs(3, 8, self.names)
        self.variables = _random_variables(self.model, self.x, self.t, self.cond)
        self.call = jax.jit(self.model.apply)
        self.encode = jax.jit(lambda v, c: self.model.apply(v, c, method=ConditionalFNO.encode))
        self.denoise = jax.jit(
            lambda v, x, t, f: self.model.apply(v, x, t, f, method=ConditionalFNO.denoise)
        )


@pytest.fixture(scope="module")
def tiny() -> _Tiny:
    return _Tiny()


# --------------------------------------------------------------------------------------------------
# Spectral convolution
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("nx", "ny", "modes"), [(16, 16, 4), (8, 8, 4), (12, 10, 3)])
@pytest.mark.parametrize("method", ["fft", "dft"])
def test_spectral_conv_matches_numpy_reference(nx: int, ny: int, modes: int, method: str) -> None:
    # (8, 8, 4): n = 2 m keeps the Nyquist row kx = n / 2; (12, 10, 3): rectangular, not 2^k.
    layer = SpectralConv2d(features=5, modes=modes, method=method)
    rng = np.random.default_rng(0)
    x = _normal(rng, 3, nx, ny, 4)
    shapes = jax.eval_shape(layer.init, jax.random.key(0), x)
    assert shapes["params"]["kernel"].shape == (4, 5, 2 * modes, modes, 2)
    # Generic complex weights, including the DC and Nyquist rows.
    kernel = _normal(rng, 4, 5, 2 * modes, modes, 2)
    out = jax.jit(layer.apply)({"params": {"kernel": kernel}}, x)
    expected = _numpy_spectral_conv(np.asarray(x, np.float64), _complex_kernel(kernel))
    assert out.shape == (3, nx, ny, 5)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5 * scale)


def test_spectral_conv_paths_agree_in_float64(x64: None) -> None:
    rng = np.random.default_rng(0)
    x = _normal(rng, 3, 2, 12, 12, dtype=np.float64)
    weight = _normal(rng, 3, 4, 8, 4, 2, dtype=np.float64)
    dft = jax.jit(spectral_conv_dft)(x, weight)
    fft = jax.jit(spectral_conv_fft)(x, weight)
    assert dft.dtype == jnp.float64
    expected = _numpy_spectral_conv(
        np.asarray(x).transpose(1, 2, 3, 0), _complex_kernel(weight)
    ).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(np.asarray(dft), expected, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(np.asarray(fft), expected, atol=1e-12 * np.abs(expected).max())


def test_spectral_conv_fft_and_dft_agree_at_pcdm_width() -> None:
    # Float32 at paper B's width and modes: the two paths agree to ~1e-6.
    rng = np.random.default_rng(0)
    x = _normal(rng, 40, 2, 16, 16)
    weight = jnp.asarray(rng.uniform(size=(40, 40, 12, 6, 2)).astype(np.float32) / 1600.0)
    dft = np.asarray(jax.jit(spectral_conv_dft)(x, weight))
    fft = np.asarray(jax.jit(spectral_conv_fft)(x, weight))
    assert np.linalg.norm(dft - fft) / np.linalg.norm(fft) < 1e-5


def test_spectral_conv_layouts_are_consistent() -> None:
    rng = np.random.default_rng(0)
    x = _normal(rng, 2, 16, 16, 3)
    last = SpectralConv2d(4, 3, method="dft")
    first = SpectralConv2d(4, 3, method="dft", layout="cbxy")
    variables = {"params": {"kernel": _normal(rng, 3, 4, 6, 3, 2)}}
    out_last = jax.jit(last.apply)(variables, x)
    out_first = jax.jit(first.apply)(variables, x.transpose(3, 0, 1, 2))
    np.testing.assert_allclose(out_first.transpose(1, 2, 3, 0), out_last, rtol=1e-6, atol=1e-7)


def test_fno_block_layouts_are_consistent() -> None:
    rng = np.random.default_rng(0)
    x = _normal(rng, 2, 12, 12, 4)
    embedding = _normal(rng, 2, 5)
    last = FNOBlock(width=4, modes=3, spectral_method="dft")
    first = FNOBlock(width=4, modes=3, spectral_method="fft", layout="cbxy")
    variables = _random_variables(last, x, embedding)
    assert set(variables["params"]) == {"spectral", "pointwise", "embedding_bias"}
    out_last = jax.jit(last.apply)(variables, x, embedding)
    out_first = jax.jit(first.apply)(variables, x.transpose(3, 0, 1, 2), embedding)
    np.testing.assert_allclose(out_first.transpose(1, 2, 3, 0), out_last, rtol=1e-5, atol=1e-5)
    # The embedding bias is a per-channel constant: it changes the pre-activation uniformly.
    linear = FNOBlock(width=4, modes=3, activation=False, spectral_method="dft")
    with_bias = np.asarray(jax.jit(linear.apply)(variables, x, embedding))
    no_embedding = {k: variables["params"][k] for k in ("spectral", "pointwise")}
    without = np.asarray(jax.jit(linear.apply)({"params": no_embedding}, x))
    shift = with_bias - without
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1, :1, :], shift.shape), atol=1e-5)
    assert np.abs(shift).max() > 1e-3


def test_spectral_conv_initialisation() -> None:
    # FNO initialisation: real and imaginary parts uniform on [0, 1 / (in * out)).
    layer = SpectralConv2d(features=5, modes=2)
    variables = jax.jit(layer.init)(jax.random.key(0, impl="rbg"), jnp.ones((1, 8, 8, 4)))
    kernel = np.asarray(variables["params"]["kernel"])
    assert kernel.shape == (4, 5, 4, 2, 2)
    assert kernel.min() >= 0.0 and kernel.max() < 1.0 / 20
    assert kernel.std() > 0.2 / 20


def test_spectral_conv_rejects_small_grids_and_bad_options() -> None:
    layer = SpectralConv2d(features=2, modes=5)
    with pytest.raises(ValueError, match=r"grid size 8x8 .* modes=5"):
        layer.init(jax.random.key(0), jnp.ones((1, 8, 8, 2)))
    with pytest.raises(ValueError, match="spectral method"):
        SpectralConv2d(2, 2, method="fast").init(jax.random.key(0), jnp.ones((1, 8, 8, 2)))
    with pytest.raises(ValueError, match="layout"):
        SpectralConv2d(2, 2, layout="bcxy").init(jax.random.key(0), jnp.ones((1, 8, 8, 2)))


def test_grid_coordinates_are_periodic_cell_corners() -> None:
    gx, gy = grid_coordinates(4, 8)
    np.testing.assert_array_equal(gx, [0.0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(gy, np.arange(8) / 8)


def test_auto_method_follows_backend() -> None:
    expected = "dft" if jax.default_backend() == "cpu" else "fft"
    assert resolve_spectral_method("auto") == expected
    assert resolve_spectral_method("fft") == "fft"


# --------------------------------------------------------------------------------------------------
# Conditional score network
# --------------------------------------------------------------------------------------------------


def test_encode_then_denoise_equals_call_and_paths_agree(tiny: _Tiny) -> None:
    variables, x, t, cond = tiny.variables, tiny.x, tiny.t, tiny.cond
    out = tiny.call(variables, x, t, cond)
    assert out.shape == (3, 8, 8)
    features = tiny.encode(variables, cond)
    assert features.shape == (3, 2 * 6, 8, 8)
    # The features do not depend on t: reuse them for two noise levels.
    np.testing.assert_allclose(tiny.denoise(variables, x, t, features), out, rtol=1e-6, atol=1e-6)
    other_t = tiny.denoise(variables, x, t[::-1], features)
    assert np.abs(np.asarray(other_t - out)).max() > 1e-4
    # A scalar t is broadcast over the batch.
    scalar = tiny.denoise(variables, x, jnp.float32(0.3), features)
    np.testing.assert_allclose(
        scalar, tiny.denoise(variables, x, jnp.full((3,), 0.3), features), rtol=1e-5, atol=1e-6
    )
    fft_out = jax.jit(tiny.model.clone(spectral_method="fft").apply)(variables, x, t, cond)
    np.testing.assert_allclose(fft_out, out, atol=1e-5 * float(jnp.abs(out).max()))


def test_resolution_invariance(tiny: _Tiny) -> None:
    # The same parameters on 16^2, 32^2 and 64^2; a band-limited input gives the same output at
    # the shared grid points up to the aliasing of the GELU harmonics (measured ~0.1-0.2 %).
    outputs = {}
    for n in (16, 32, 64):
        x = jnp.asarray(np.stack([_smooth_field(n), _smooth_field(n, 1.0)]))
        cond = {
            "omega": jnp.asarray(2.0 * np.stack([_smooth_field(n, 0.3), _smooth_field(n, 2.0)])),
            "sparse": jnp.asarray(np.stack([_smooth_field(n, 1.5), _smooth_field(n, 0.7)])),
        }
        outputs[n] = np.asarray(tiny.call(tiny.variables, x, jnp.array([0.1, 0.7]), cond))
        assert outputs[n].shape == (2, n, n)
    for coarse, fine in ((16, 32), (32, 64)):
        shared = outputs[fine][:, :: fine // coarse, :: fine // coarse]
        error = np.linalg.norm(shared - outputs[coarse]) / np.linalg.norm(outputs[coarse])
        assert error < 1e-2, (coarse, fine, error)


def test_gradients_reach_every_parameter(tiny: _Tiny) -> None:
    params = tiny.variables["params"]

    @jax.jit
    def loss(p: dict) -> jax.Array:
        return jnp.sum(jnp.sin(tiny.model.apply({"params": p}, tiny.x, tiny.t, tiny.cond)))

    grads = jax.grad(loss)(params)
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    assert len(flat) == len(jax.tree_util.tree_leaves(params))
    for path, grad in flat:
        name = jax.tree_util.keystr(path)
        grad = np.asarray(grad)
        assert np.all(np.isfinite(grad)), name
        assert np.abs(grad).max() > 0.0, name
        if name.endswith("['spectral']['kernel']"):
            # Only the imaginary weights of the (kx, ky) = (0, 0) mode are inert (the output is
            # the real part of the inverse transform), one per (in, out) pair.
            c_in, c_out = grad.shape[:2]
            assert np.count_nonzero(grad == 0.0) <= c_in * c_out, name
    # The noise embedding feeds the target branch only.
    assert "embedding_bias" in params["target_branch"]["block_0"]
    assert "embedding_bias" not in params["condition_branch_omega"]["block_0"]


def test_condition_validation(tiny: _Tiny) -> None:
    model, variables, x, t, cond = tiny.model, tiny.variables, tiny.x, tiny.t, tiny.cond
    with pytest.raises(ValueError, match=r"missing condition\(s\) \['sparse'\]"):
        model.apply(variables, x, t, {"omega": cond["omega"]})
    bad = dict(cond, sparse=jnp.zeros((3, 10, 10)))
    with pytest.raises(ValueError, match=r"'sparse' has shape \(3, 10, 10\).*\(3, 8, 8\)"):
        model.apply(variables, x, t, bad)
    with pytest.raises(ValueError, match=r"'sparse' has shape \(3, 10, 10\).*'omega'"):
        model.apply(variables, bad, method=ConditionalFNO.encode)
    with pytest.raises(ValueError, match="square field"):
        model.apply(variables, x, t, dict(cond, omega=jnp.zeros((3, 8, 9))))
    nan = dict(cond, omega=cond["omega"].at[0, 1, 2].set(jnp.nan))
    with pytest.raises(ValueError, match="'omega' contains non-finite"):
        model.apply(variables, x, t, nan)
    with pytest.raises(ValueError, match="x_t contains non-finite"):
        model.apply(variables, x.at[0, 0, 0].set(jnp.inf), t, cond)
    # Under jit the check is skipped (values are not known), and NaN propagates.
    assert np.isnan(np.asarray(tiny.call(variables, x, t, nan))).any()
    features = jnp.zeros((3, 12, 8, 8))
    with pytest.raises(ValueError, match="features must have shape"):
        model.apply(variables, x, t, features[:, :6], method=ConditionalFNO.denoise)
    with pytest.raises(ValueError, match="features must have shape"):
        model.apply(variables, x, t, features.transpose(0, 2, 3, 1), method=ConditionalFNO.denoise)
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        model.apply(variables, x, t[:1], features, method=ConditionalFNO.denoise)


def test_grid_smaller_than_two_modes_is_rejected() -> None:
    model = _tiny_model(modes=5)
    x, t, cond = _inputs(1, 8)
    with pytest.raises(ValueError, match=r"grid size 8x8 is too small for modes=5"):
        model.init(jax.random.key(0), x, t, cond)


def test_invalid_hyperparameters() -> None:
    x, t, cond = _inputs(1, 8)
    with pytest.raises(ValueError, match="width"):
        _tiny_model(width=0).init(jax.random.key(0), x, t, cond)
    with pytest.raises(ValueError, match="condition_names"):
        _tiny_model(condition_names=()).init(jax.random.key(0), x, t, {})
    with pytest.raises(ValueError, match="distinct"):
        _tiny_model(condition_names=("omega", "omega")).init(jax.random.key(0), x, t, cond)
    with pytest.raises(ValueError, match="spectral method"):
        _tiny_model(spectral_method="fourier").init(jax.random.key(0), x, t, cond)


def test_branch_output_layout() -> None:
    branch = FNOBranch(width=4, modes=2, depth=2)
    field = _normal(np.random.default_rng(0), 3, 8, 8)
    variables = _random_variables(branch, field)
    apply = jax.jit(branch.apply)
    out = apply(variables, field)
    assert out.shape == (3, 8, 8, 4)
    # Batch elements are processed independently.
    np.testing.assert_allclose(apply(variables, field[1:2])[0], out[1], rtol=1e-5, atol=1e-6)
    assert variables["params"]["lift"]["kernel"].shape == (3, 4)


def test_branch_channel_outer_output_is_the_transpose() -> None:
    field = _normal(np.random.default_rng(1), 3, 8, 8)
    branch = FNOBranch(width=4, modes=2, depth=2)
    variables = _random_variables(branch, field)
    outer = FNOBranch(width=4, modes=2, depth=2, output_layout="cbxy").apply(variables, field)
    assert outer.shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(outer.transpose(1, 2, 3, 0), branch.apply(variables, field))


class _DenseHead(nn.Module):
    """The fusion head written with flax.linen.Dense on channels-last features (its former form)."""

    width: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for i, features in enumerate((2 * self.width, self.width, self.width)):
            h = _gelu(nn.Dense(features, name=f"mix_{i}")(h))
        h = _gelu(nn.Dense(128, name="mlp_hidden")(h))
        return nn.Dense(1, name="mlp_out")(h)[..., 0]


def test_fusion_head_layouts_agree_and_keep_the_dense_parameters() -> None:
    """Both layouts compute the Dense head, and its parameters (checkpoints) carry over."""
    h = _normal(np.random.default_rng(2), 2, 8, 8, 10)  # [batch, n, n, C]
    dense = _DenseHead(width=5)
    variables = _random_variables(dense, h)
    expected = dense.apply(variables, h)
    for layout, x in (("bxyc", h), ("cbxy", h.transpose(3, 0, 1, 2))):
        head = FusionHead(width=5, layout=layout)
        init = head.init(jax.random.key(0), x)
        assert jax.tree.map(jnp.shape, init) == jax.tree.map(jnp.shape, variables)
        out = head.apply(variables, x)
        assert out.shape == (2, 8, 8)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # the same initial parameters as the Dense head for the same key
    same = FusionHead(width=5, layout="cbxy").init(jax.random.key(3), h.transpose(3, 0, 1, 2))
    reference = dense.init(jax.random.key(3), h)
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_deterministic_fno() -> None:
    model = DeterministicFNO(width=6, modes=3, depth=2, condition_names=("omega", "sparse"))
    _, _, cond = _inputs(2, 8, ("omega", "sparse"))
    variables = _random_variables(model, cond)
    out = jax.jit(model.apply)(variables, cond)
    assert out.shape == (2, 8, 8)
    assert np.all(np.isfinite(np.asarray(out)))
    params = variables["params"]
    assert set(params) == {"condition_branch_omega", "condition_branch_sparse", "head"}
    assert params["head"]["mix_0"]["kernel"].shape == (12, 12)
    with pytest.raises(ValueError, match="missing condition"):
        model.apply(variables, {"omega": cond["omega"]})


# --------------------------------------------------------------------------------------------------
# Parameter counts (arXiv 2408.02965: paper A ~0.9 M / ~1.3 M, paper B P-CDM ~2.2 M real parameters)
# --------------------------------------------------------------------------------------------------


def _architecture_count(width, modes, depth, embed, k, mlp=128) -> int:
    """Closed-form real parameter count of the architecture described in fno.py."""
    branch = (3 + 1) * width + depth * (2 * width * width * 2 * modes * modes)
    branch += depth * (width * width + width)
    embedding = embed * embed + embed + depth * (embed * width + width)
    head = ((k + 1) * width + 1) * 2 * width + (2 * width + 1) * width + (width + 1) * width
    head += (width + 1) * mlp + mlp + 1
    return (k + 1) * branch + embedding + head


@pytest.mark.parametrize(
    ("width", "modes", "embed", "names", "published"),
    [
        (20, 8, 256, ("omega",), 0.9e6),
        (20, 8, 256, ("omega", "sparse"), 1.3e6),
        (40, 6, 512, ("omega",), 2.2e6),
    ],
)
def test_parameter_counts_match_the_papers(width, modes, embed, names, published) -> None:
    model = ConditionalFNO(width=width, modes=modes, embed_dim=embed, condition_names=names)
    x, t, cond = _inputs(1, 16, names)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, t, cond)
    count = count_params(shapes)
    assert count == _architecture_count(width, modes, 4, embed, len(names))
    assert abs(count / published - 1.0) < 0.15, count


def test_count_params_counts_complex_twice() -> None:
    tree = {"a": jnp.zeros((2, 3)), "b": [jnp.zeros(4, dtype=jnp.complex64)]}
    assert count_params(tree) == 6 + 8


# --------------------------------------------------------------------------------------------------
# FLOP counts
# --------------------------------------------------------------------------------------------------


def test_dense_and_spectral_flops_by_hand() -> None:
    # A Dense layer 3 -> 20 on a batch of 2 fields of 8 x 8: 2 * 128 * 3 * 20 FLOPs.
    assert dense_flops(2 * 8 * 8, 3, 20) == 15360
    # Spectral conv, batch 2, n 8, 3 -> 5 channels, m 2 (2m x m = 8 kept modes):
    #   forward y  2 * (3*2*8) * 8 * 4     = 3072     forward x 2 * (3*2*4) * 8 * 8  = 3072
    #   mixing     8 * 2 * 8 * 3 * 5       = 1920
    #   inverse x  2 * (5*2*4) * 4 * 16    = 5120     inverse y 2 * (5*2*8) * 4 * 8  = 5120
    assert spectral_conv_flops(2, 8, 3, 5, 2, "dft") == 3072 + 3072 + 1920 + 5120 + 5120
    # FFT path: the same mixing plus 2.5 N log2 N per rfft2/irfft2, N = 64: 960 each, 16 of them.
    assert fft2_flops(8, 8) == 960
    assert spectral_conv_flops(2, 8, 3, 5, 2, "fft") == 1920 + (3 + 5) * 2 * 960


def test_dft_flops_match_xla_cost_analysis() -> None:
    x = jnp.ones((6, 2, 16, 16))
    weight = jnp.ones((6, 4, 6, 3, 2))
    compiled = jax.jit(spectral_conv_dft).lower(x, weight).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    ours = spectral_conv_flops(2, 16, 6, 4, 3, "dft")
    # XLA also counts the few elementwise additions that combine real and imaginary parts.
    assert ours <= analysis["flops"] <= 1.05 * ours


def test_model_flops_by_hand() -> None:
    model = _tiny_model(width=4, modes=2, depth=1, embed_dim=6, mlp_width=5)
    b, n, pixels = 2, 8, 2 * 8 * 8
    branch = dense_flops(pixels, 3, 4) + spectral_conv_flops(b, n, 4, 4, 2, "dft")
    branch += dense_flops(pixels, 4, 4)
    encode = branch
    embedding = dense_flops(b, 6, 6) + dense_flops(b, 6, 4)
    head = sum(dense_flops(pixels, a, c) for a, c in ((8, 8), (8, 4), (4, 4), (4, 5), (5, 1)))
    breakdown = fno_flops_breakdown(model, n, b, "dft")
    assert breakdown == {
        "encode": encode,
        "denoise": embedding + branch + head,
        "call": encode + embedding + branch + head,
    }
    assert fno_forward_flops(model, n, b, "dft", part="encode") == encode
    deterministic = DeterministicFNO(width=4, modes=2, depth=1, mlp_width=5)
    det_head = sum(dense_flops(pixels, a, c) for a, c in ((4, 8), (8, 4), (4, 4), (4, 5), (5, 1)))
    assert fno_forward_flops(deterministic, n, b, "dft") == encode + det_head
    with pytest.raises(ValueError, match="part"):
        fno_forward_flops(model, n, b, "dft", part="backward")
    with pytest.raises(ValueError, match="smaller than 2 \\* modes"):
        fno_forward_flops(model, 3, b, "dft")


def test_matmul_rate_is_positive() -> None:
    rate = matmul_rate(size=128, repeats=3)
    assert np.isfinite(rate) and rate > 1e6
