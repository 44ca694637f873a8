"""Fourier neural operators: spectral convolution, FNO blocks and the conditional score network.

The score network of papers A and B (arXiv 2408.02965, the score network;
Li et al. 2021, "Fourier neural operator for parametric PDEs"):

* every input field (the noisy target ``x_t`` and each condition, e.g. the vorticity ``omega`` and
  an encoded sparse measurement) is concatenated with the grid coordinates ``(x, y)`` and lifted
  pointwise to ``width`` channels;
* each field then goes through its own branch of ``depth`` (= 4) FNO layers, a layer being a
  spectral convolution that keeps the ``modes`` lowest Fourier modes in each direction plus a 1x1
  convolution, with a GELU between layers and none after the last;
* the noise level enters through a Gaussian Fourier projection of ``t`` (256 features at scale 30
  in paper A, 512 in paper B's P-CDM) -> dense -> SiLU, mapped to a per-channel bias that is added
  in every layer of the target branch only;
* the branch outputs are concatenated and mixed by 1x1 convolutions (``(1 + k) width -> 2 width ->
  width -> width``, GELU after each) and a pointwise MLP (``width -> 128 -> 1``).

The papers divide the output by the VE marginal std ``sigma(t)``; here the network returns the
raw output and :mod:`closurejax.diffusion` applies ``1 / sigma(t)`` (or EDM preconditioning).

Grid and resolution invariance. Fields are ``[batch, n, n]`` on the periodic unit square with
``x_i = i / n`` (``linspace(0, 1, n + 1)[:-1]``; the papers' code used ``linspace(0, 1, n)``,
which moves every coordinate when ``n`` changes). The coordinates are appended as two channels,
the spectral weights act on the kept Fourier modes scaled by ``1 / n^2`` (the ``rfft2`` /
``irfft2`` pair), and everything else is pointwise, so the same parameters apply on any grid with
``n >= 2 modes`` (paper A's zero-shot 128^2 and 256^2 tests).

Spectral convolution: the pure functions of :mod:`closurejax.models.spectral`, by ``rfft2`` /
``irfft2`` (``"fft"``) or by a truncated DFT over the kept modes as dense matmuls (``"dft"``,
the CPU default: at P-CDM size, ``[100, 64, 64, 40]`` and ``m = 6``, one layer took 40-70 ms
against 200-240 ms for the FFT pair on the 2-core development CPU).

Layouts. Public fields follow the repository convention, ``[batch, n, n]``. Inside the networks
the activations are kept channel-outer, ``[channels, batch, n, n]`` (``layout="cbxy"``), which
makes the spectral transforms and the 1x1 convolutions of the branches and of the head plain 2-D
matmuls without any transpose of a full-size array (on the 2-core CPU the head's former
channels-last layout cost 50 ms of a 0.45 s P-CDM forward in transposes alone). A stand-alone
:class:`FNOBranch` returns ``[batch, n, n, width]`` by default; the condition features passed
from :meth:`ConditionalFNO.encode` to :meth:`ConditionalFNO.denoise` are ``[batch, channels, n,
n]``.

Parameters (real numbers; a complex spectral weight counts twice): paper A with modes 8, width 20,
embed 256 has 914,769 (omega only; published ~0.9 M) and 1,326,929 (omega + sparse; ~1.3 M);
paper B's P-CDM (modes 6, width 40, embed 512) has 2,218,113 (~2.2 M). The one deliberate
difference from the papers' code: each target-branch layer has its own dense map of the noise
embedding to a per-channel bias, where the papers' code shares one map across the layers
(``depth - 1`` extra ``embed_dim x width`` matrices, +15 k parameters in paper A).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from closurejax.models.embeddings import GaussianFourierProjection
from closurejax.models.spectral import (
    Precision,
    check_grid,
    check_method,
    grid_coordinates,
    resolve_spectral_method,
    spectral_conv_dft,
    spectral_conv_fft,
)

__all__ = [
    "LAYOUTS",
    "SpectralConv2d",
    "PointwiseConv",
    "FNOBlock",
    "FNOBranch",
    "FusionHead",
    "ConditionalFNO",
    "DeterministicFNO",
    "count_params",
    "check_finite",
    "settings_from_config",
]

LAYOUTS: tuple[str, ...] = ("bxyc", "cbxy")
"""Activation layouts: ``"bxyc"`` = ``[batch, x, y, channels]`` (the repository convention),
``"cbxy"`` = ``[channels, batch, x, y]`` (channel-outer, used inside branches)."""

_BatchedConditions = Mapping[str, jax.Array]


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_layout(layout: str) -> None:
    """Raise ``ValueError`` unless ``layout`` is one of :data:`LAYOUTS`."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def check_finite(name: str, value: jax.Array) -> None:
    """Raise ``ValueError`` if a concrete ``value`` holds NaN or Inf (skipped under tracing)."""
    if isinstance(value, jax.core.Tracer):
        return
    if not np.all(np.isfinite(np.asarray(value))):
        raise ValueError(f"{name} contains non-finite values (NaN or Inf)")


def _check_field(name: str, value: jax.Array) -> tuple[int, int, int]:
    """Check that ``value`` is a square ``[batch, n, n]`` field; return its shape."""
    shape = tuple(np.shape(value))
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"{name} must be a square field [batch, n, n], got shape {shape}")
    return shape  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------


def _gelu(x: jax.Array) -> jax.Array:
    """Exact GELU ``x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`` (PyTorch's default, as in the papers).

    Written with ``lax.erf``: XLA fuses it into one elementwise loop, where ``jax.nn.gelu``'s
    ``erfc`` form becomes several full-size passes (measured: 1/3 more memory traffic per FNO
    branch on CPU).
    """
    return x * (0.5 + 0.5 * lax.erf(x * np.asarray(1.0 / np.sqrt(2.0), dtype=x.dtype)))


def _spectral_init(scale: float):
    """FNO initialisation: real and imaginary parts uniform on ``[0, scale)`` (Li et al.)."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return scale * jax.random.uniform(key, shape, dtype)

    return init


class SpectralConv2d(nn.Module):
    """Fourier layer: keep the ``modes`` lowest modes per direction, mix channels per mode.

    ``y = irfft2(W(k) rfft2(x)(k))`` on ``kx in {0..m-1} u {n-m..n-1}``, ``ky in {0..m-1}``
    (the standard FNO corners; Li et al. 2021), every other mode set to zero.

    Parameters: ``kernel [in, out, 2m, m, 2]`` float32 (real, imaginary parts of the complex
    weights ``[in, out, 2m, m]``), initialised uniform on ``[0, 1 / (in out))`` like FNO.

    Attributes:
        features: number of output channels.
        modes: kept modes per direction ``m``; every grid size must be ``>= 2 m``.
        method: ``"fft"``, ``"dft"`` or ``"auto"`` (see :func:`resolve_spectral_method`).
        layout: ``"bxyc"`` (``[batch, nx, ny, channels]``, default) or ``"cbxy"``
            (``[channels, batch, nx, ny]``; the fast layout for the ``"dft"`` path).
        precision: ``lax.Precision`` of the matmuls (``None``: backend default).
    """

    features: int
    modes: int
    method: str = "auto"
    layout: str = "bxyc"
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the layer.

        Args:
            x: ``[batch, nx, ny, in]`` (``layout="bxyc"``) or ``[in, batch, nx, ny]``
                (``layout="cbxy"``).

        Returns:
            The same layout with ``features`` channels.

        Raises:
            ValueError: on a bad method, layout or rank, or a grid smaller than ``2 * modes``.
        """
        _check_positive_int("features", self.features)
        _check_positive_int("modes", self.modes)
        _check_layout(self.layout)
        method = resolve_spectral_method(self.method)
        if x.ndim != 4:
            raise ValueError(f"SpectralConv2d expects a 4-D input ({self.layout}), got {x.shape}")
        channel_axis = 3 if self.layout == "bxyc" else 0
        spatial = (x.shape[1], x.shape[2]) if self.layout == "bxyc" else x.shape[2:]
        check_grid(*spatial, self.modes, "SpectralConv2d")
        c_in = x.shape[channel_axis]
        shape = (c_in, self.features, 2 * self.modes, self.modes, 2)
        kernel = self.param("kernel", _spectral_init(1.0 / (c_in * self.features)), shape)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        conv = spectral_conv_dft if method == "dft" else spectral_conv_fft
        if self.layout == "cbxy":
            return conv(x, kernel, self.precision)
        return conv(x.transpose(3, 0, 1, 2), kernel, self.precision).transpose(1, 2, 3, 0)


class PointwiseConv(nn.Module):
    """1x1 convolution (a dense layer on the channel axis) in either layout.

    Parameters ``kernel [in, features]`` (LeCun normal) and ``bias [features]`` (zeros), the
    same names, shapes and initialisers as ``flax.linen.Dense``.

    Attributes:
        features: output channels.
        layout: ``"bxyc"`` (channels last) or ``"cbxy"`` (channels first, contracted as
            ``kernel^T @ x.reshape(in, -1)``).
        precision: ``lax.Precision`` of the matmul.
    """

    features: int
    layout: str = "bxyc"
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[..., in] -> [..., features]`` (bxyc) or ``[in, ...] -> [features, ...]`` (cbxy)."""
        _check_layout(self.layout)
        axis = -1 if self.layout == "bxyc" else 0
        c_in = x.shape[axis]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (c_in, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        dtype = jnp.result_type(x.dtype, kernel.dtype)
        x, kernel, bias = x.astype(dtype), kernel.astype(dtype), bias.astype(dtype)
        if self.layout == "bxyc":
            y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), self.precision)
            return y + bias
        y = lax.dot_general(kernel, x, (((0,), (0,)), ((), ())), self.precision)
        return y + bias.reshape((-1,) + (1,) * (x.ndim - 1))


class FNOBlock(nn.Module):
    """One FNO layer: ``act(K x + W x + b + D e)``.

    ``K`` is a :class:`SpectralConv2d`, ``W x + b`` a :class:`PointwiseConv`, and ``D e`` an
    optional per-channel bias from an embedding ``e [batch, E]`` (``D`` a dense layer ``E ->
    width``; the papers' noise-level bias). ``act`` is the exact GELU, or the identity for the
    last layer of a branch (``activation=False``).

    Attributes:
        width: channels in and out.
        modes: kept Fourier modes per direction.
        activation: apply GELU at the end.
        spectral_method: ``"auto" | "fft" | "dft"``.
        layout: ``"bxyc"`` or ``"cbxy"`` (see :data:`LAYOUTS`).
        precision: ``lax.Precision`` of the matmuls.
    """

    width: int
    modes: int
    activation: bool = True
    spectral_method: str = "auto"
    layout: str = "bxyc"
    precision: Precision = None

    @nn.compact
    def __call__(self, x: jax.Array, embedding: jax.Array | None = None) -> jax.Array:
        """Apply the layer.

        Args:
            x: ``[batch, n, n, width]`` (bxyc) or ``[width, batch, n, n]`` (cbxy).
            embedding: optional ``[batch, E]``.

        Returns:
            Same shape and layout as ``x``.
        """
        h = SpectralConv2d(
            self.width, self.modes, self.spectral_method, self.layout, self.precision,
            name="spectral",
        )(x)  # fmt: skip
        h = h + PointwiseConv(self.width, self.layout, self.precision, name="pointwise")(x)
        if embedding is not None:
            bias = nn.Dense(self.width, precision=self.precision, name="embedding_bias")(embedding)
            h = h + (bias[:, None, None, :] if self.layout == "bxyc" else bias.T[:, :, None, None])
        if self.activation:
            h = _gelu(h)
        return h


class FNOBranch(nn.Module):
    """One branch: lift ``[field, x, y]`` to ``width`` channels, then ``depth`` FNO layers.

    The lift is the dense layer ``(field, x, y) -> width`` (parameters ``lift/kernel [3, width]``,
    ``lift/bias [width]``), evaluated as ``k_0 field + (k_1 x + k_2 y + b)`` so the coordinate
    channels are never materialised. GELU follows every layer but the last. If an ``embedding``
    is given, each layer adds its own dense projection of it as a per-channel bias (papers A and
    B: the noise embedding, in the target branch only).

    Attributes:
        width: channels.
        modes: kept Fourier modes per direction.
        depth: number of FNO layers (papers: 4).
        spectral_method: ``"auto" | "fft" | "dft"``.
        precision: ``lax.Precision`` of the matmuls.
        output_layout: ``"bxyc"`` (default) or ``"cbxy"`` (the layout the branch computes in).
    """

    width: int
    modes: int
    depth: int = 4
    spectral_method: str = "auto"
    precision: Precision = None
    output_layout: str = "bxyc"

    @nn.compact
    def __call__(self, field: jax.Array, embedding: jax.Array | None = None) -> jax.Array:
        """Apply the branch.

        Args:
            field: ``[batch, n, n]`` on the grid ``x_i = i / n``.
            embedding: optional ``[batch, E]``.

        Returns:
            ``[batch, n, n, width]`` (``output_layout="bxyc"``) or ``[width, batch, n, n]``
            (``"cbxy"``, no transpose of the activations).
        """
        _check_positive_int("depth", self.depth)
        _check_layout(self.output_layout)
        if field.ndim != 3:
            raise ValueError(f"field must be [batch, nx, ny], got shape {field.shape}")
        if not jnp.issubdtype(field.dtype, jnp.floating):
            field = field.astype(jnp.float32)
        h = _CoordinateLift(self.width, name="lift")(field)  # [width, batch, nx, ny]
        for layer in range(self.depth):
            h = FNOBlock(
                self.width, self.modes, activation=layer < self.depth - 1,
                spectral_method=self.spectral_method, layout="cbxy", precision=self.precision,
                name=f"block_{layer}",
            )(h, embedding)  # fmt: skip
        return h.transpose(1, 2, 3, 0) if self.output_layout == "bxyc" else h


class _CoordinateLift(nn.Module):
    """Dense ``(field, x, y) -> width`` on a ``[batch, nx, ny]`` field; returns channel-outer."""

    width: int

    @nn.compact
    def __call__(self, field: jax.Array) -> jax.Array:
        """``[batch, nx, ny] -> [width, batch, nx, ny]``."""
        _check_positive_int("width", self.width)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, self.width))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.width,))
        dtype = jnp.result_type(field.dtype, kernel.dtype)
        kernel, bias = kernel.astype(dtype), bias.astype(dtype)
        gx, gy = grid_coordinates(field.shape[1], field.shape[2], dtype)
        coords = (
            kernel[1][:, None, None] * gx[None, :, None]
            + kernel[2][:, None, None] * gy[None, None, :]
            + bias[:, None, None]
        )  # [width, nx, ny]
        return kernel[0][:, None, None, None] * field.astype(dtype)[None] + coords[:, None]


class FusionHead(nn.Module):
    """Mix concatenated branch features into one output channel (papers A and B).

    1x1 convolutions ``C -> fusion_width -> width -> width`` with GELU after each, then the
    pointwise MLP ``width -> mlp_width -> 1`` with GELU in between (no activation at the end).
    Every layer is a :class:`PointwiseConv` (parameters ``mix_i/kernel [in, out]``, ``bias``:
    the names, shapes and initialisers of ``flax.linen.Dense``).

    Attributes:
        width: FNO width.
        fusion_width: channels of the first 1x1 convolution (``None``: ``2 * width``).
        mlp_width: hidden width of the final MLP (papers: 128).
        precision: ``lax.Precision`` of the matmuls.
        layout: ``"bxyc"`` (input ``[batch, n, n, C]``) or ``"cbxy"`` (input ``[C, batch, n,
            n]``: every layer one ``[out, in] @ [in, batch n n]`` matmul, no transposes).
    """

    width: int
    fusion_width: int | None = None
    mlp_width: int = 128
    precision: Precision = None
    layout: str = "bxyc"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        """``[batch, n, n, C]`` (bxyc) or ``[C, batch, n, n]`` (cbxy) ``-> [batch, n, n]``."""
        _check_layout(self.layout)
        fusion_width = 2 * self.width if self.fusion_width is None else self.fusion_width
        dense = functools.partial(PointwiseConv, layout=self.layout, precision=self.precision)
        for i, features in enumerate((fusion_width, self.width, self.width)):
            h = _gelu(dense(features, name=f"mix_{i}")(h))
        h = _gelu(dense(self.mlp_width, name="mlp_hidden")(h))
        out = dense(1, name="mlp_out")(h)
        return out[..., 0] if self.layout == "bxyc" else out[0]


# --------------------------------------------------------------------------------------------------
# Score network and regression baseline
# --------------------------------------------------------------------------------------------------


def _validate_architecture(module: ConditionalFNO | DeterministicFNO) -> None:
    """Check the hyper-parameters shared by the conditional and deterministic networks."""
    for name in ("width", "modes", "depth", "mlp_width"):
        _check_positive_int(name, getattr(module, name))
    if module.fusion_width is not None:
        _check_positive_int("fusion_width", module.fusion_width)
    check_method(module.spectral_method)
    names = module.condition_names
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) == 0:
        raise ValueError(f"condition_names must be a non-empty sequence of names, got {names!r}")
    if not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"condition_names must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"condition_names must be distinct, got {names!r}")


def _validate_conditions(
    cond: _BatchedConditions,
    names: Sequence[str],
    modes: int,
    expected_shape: tuple[int, ...] | None = None,
    expected_name: str = "x_t",
) -> tuple[int, int, int]:
    """Check that every named condition is a finite square field of one common shape.

    Returns:
        The common shape ``(batch, n, n)``.
    """
    if not isinstance(cond, Mapping):
        raise ValueError(f"cond must be a mapping from condition name to field, got {type(cond)}")
    missing = [name for name in names if name not in cond]
    if missing:
        raise ValueError(
            f"missing condition(s) {missing}: the model was built with condition_names="
            f"{tuple(names)}, got keys {sorted(cond)}"
        )
    shape = expected_shape
    reference = expected_name
    for name in names:
        field_shape = _check_field(f"condition {name!r}", cond[name])
        if shape is None:
            shape, reference = field_shape, f"condition {name!r}"
        elif field_shape != shape:
            raise ValueError(
                f"condition {name!r} has shape {field_shape} but {reference} has shape {shape}; "
                f"all conditions must match the target field [batch, n, n]"
            )
        check_finite(f"condition {name!r}", cond[name])
    assert shape is not None
    check_grid(shape[1], shape[2], modes, f"conditions {tuple(names)}")
    return shape  # type: ignore[return-value]


class ConditionalFNO(nn.Module):
    """Conditional FNO score network of papers A and B (raw output, not divided by sigma(t)).

    One :class:`FNOBranch` for the noisy target ``x_t`` and one per condition; the noise
    embedding ``SiLU(Dense(GaussianFourierProjection(t)))`` is added as a per-layer bias in the
    target branch only; the branch outputs are concatenated and fused by a :class:`FusionHead`.

    The condition branches do not depend on ``t``: :meth:`encode` them once per closure sample and
    reuse the features across every sampler step with :meth:`denoise`:

        feats = model.apply(params, cond, method=ConditionalFNO.encode)
        out = model.apply(params, x_t, t, feats, method=ConditionalFNO.denoise)

    ``model.apply(params, x_t, t, cond)`` is ``denoise(x_t, t, encode(cond))``.

    Every branch and the head compute channel-outer (``[channels, batch, n, n]``), so the 1x1
    convolutions and the spectral transforms are plain 2-D matmuls and no full-size activation is
    transposed; the features handed from :meth:`encode` to :meth:`denoise` are
    ``[batch, channels, n, n]`` (batch-leading, so they slice, vmap and shard along the batch;
    turning them channel-outer moves whole ``n x n`` planes).

    Attributes:
        width: FNO channels per branch (paper A: 20; paper B P-CDM: 40).
        modes: kept Fourier modes per direction (paper A: 8; paper B P-CDM: 6).
        depth: FNO layers per branch (papers: 4).
        embed_dim: Gaussian Fourier features of ``t`` (paper A: 256; paper B P-CDM: 512).
        embed_scale: scale of the Gaussian Fourier frequencies (papers: 30).
        condition_names: names of the condition fields, in branch order (e.g. ``("omega",)`` or
            ``("omega", "sparse")``).
        fusion_width: first 1x1 convolution of the head (``None``: ``2 * width``).
        mlp_width: hidden width of the final pointwise MLP (papers: 128).
        spectral_method: ``"auto" | "fft" | "dft"``.
        precision: ``lax.Precision`` of all matmuls (``None``: backend default).
    """

    width: int = 20
    modes: int = 8
    depth: int = 4
    embed_dim: int = 256
    embed_scale: float = 30.0
    condition_names: tuple[str, ...] = ("omega",)
    fusion_width: int | None = None
    mlp_width: int = 128
    spectral_method: str = "auto"
    precision: Precision = None

    def setup(self) -> None:
        """Build the branches, the noise embedding and the head (validating hyper-parameters)."""
        _validate_architecture(self)
        branch = functools.partial(
            FNOBranch, self.width, self.modes, self.depth, self.spectral_method, self.precision
        )
        self.time_projection = GaussianFourierProjection(self.embed_dim, self.embed_scale)
        self.time_dense = nn.Dense(self.embed_dim, precision=self.precision)
        self.target_branch = branch(output_layout="cbxy")
        self.condition_branch = {
            name: branch(output_layout="cbxy") for name in self.condition_names
        }
        self.head = FusionHead(
            self.width, self.fusion_width, self.mlp_width, self.precision, layout="cbxy"
        )

    @property
    def feature_channels(self) -> int:
        """Channels of the encoded conditions: ``width * len(condition_names)``."""
        return self.width * len(self.condition_names)

    def encode(self, cond: _BatchedConditions) -> jax.Array:
        """Run the condition branches (independent of the noise level).

        Args:
            cond: mapping ``name -> [batch, n, n]`` holding every name in ``condition_names``
                (extra keys are ignored), all of one shape with ``n >= 2 * modes``.

        Returns:
            Features ``[batch, width * len(condition_names), n, n]`` (branches in
            ``condition_names`` order).

        Raises:
            ValueError: for a missing condition, mismatched shapes, a grid smaller than
                ``2 * modes``, or non-finite (concrete) inputs.
        """
        _validate_conditions(cond, self.condition_names, self.modes)
        return self._encode(cond).transpose(1, 0, 2, 3)

    def _encode(self, cond: _BatchedConditions) -> jax.Array:
        """The condition branches, unvalidated: ``[width * len(condition_names), batch, n, n]``."""
        return jnp.concatenate(
            [self.condition_branch[name](cond[name]) for name in self.condition_names], axis=0
        )

    def embed_noise(self, t: jax.Array) -> jax.Array:
        """Noise embedding ``SiLU(Dense(GaussianFourierProjection(t)))``: ``[B] -> [B, E]``."""
        return nn.silu(self.time_dense(self.time_projection(t)))

    def _check_target(self, x_t: jax.Array, t: jax.Array) -> jax.Array:
        """Validate ``x_t [B, n, n]`` and ``t``; return ``t`` broadcast to ``[B]``."""
        batch, n, _ = _check_field("x_t", x_t)
        check_grid(n, n, self.modes, "x_t")
        t = jnp.asarray(t)
        if t.ndim == 0:
            t = jnp.broadcast_to(t, (batch,))
        if t.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape ({batch},), got {t.shape}")
        check_finite("x_t", x_t)
        check_finite("t", t)
        return t

    def denoise(self, x_t: jax.Array, t: jax.Array, features: jax.Array) -> jax.Array:
        """Target branch and fusion head on pre-encoded condition features.

        Args:
            x_t: noisy target ``[batch, n, n]``.
            t: diffusion times ``[batch]`` (a scalar is broadcast to the batch).
            features: output of :meth:`encode`, ``[batch, width * len(condition_names), n, n]``.

        Returns:
            ``[batch, n, n]``, the raw network output (the caller divides by ``sigma(t)`` or
            applies EDM preconditioning).

        Raises:
            ValueError: for mismatched shapes, a grid smaller than ``2 * modes``, or non-finite
                (concrete) inputs.
        """
        t = self._check_target(x_t, t)
        expected = (x_t.shape[0], self.feature_channels, *x_t.shape[1:])
        if tuple(np.shape(features)) != expected:
            raise ValueError(
                f"features must have shape {expected} (batch, width * len(condition_names), n, "
                f"n) to match x_t {tuple(x_t.shape)}, got {np.shape(features)}"
            )
        check_finite("features", features)
        return self._denoise(x_t, t, features.transpose(1, 0, 2, 3))

    def _denoise(self, x_t: jax.Array, t: jax.Array, features: jax.Array) -> jax.Array:
        """:meth:`denoise` without validation; ``t [batch]``, features channel-outer
        ``[channels, batch, n, n]``."""
        h = self.target_branch(x_t, self.embed_noise(t))
        return self.head(jnp.concatenate([h, features.astype(h.dtype)], axis=0))

    def __call__(self, x_t: jax.Array, t: jax.Array, cond: _BatchedConditions) -> jax.Array:
        """``denoise(x_t, t, encode(cond))``: ``[B, n, n], [B], {name: [B, n, n]} -> [B, n, n]``."""
        t = self._check_target(x_t, t)
        _validate_conditions(cond, self.condition_names, self.modes, tuple(x_t.shape), "x_t")
        return self._denoise(x_t, t, self._encode(cond))


class DeterministicFNO(nn.Module):
    """The same backbone as a deterministic regression baseline (MSE), no noise input.

    One :class:`FNOBranch` per condition and the :class:`FusionHead`; no target branch and no
    noise embedding: ``apply(params, cond) -> [batch, n, n]``.

    Attributes:
        width, modes, depth, condition_names, fusion_width, mlp_width, spectral_method,
        precision: as in :class:`ConditionalFNO`.
    """

    width: int = 20
    modes: int = 8
    depth: int = 4
    condition_names: tuple[str, ...] = ("omega",)
    fusion_width: int | None = None
    mlp_width: int = 128
    spectral_method: str = "auto"
    precision: Precision = None

    def setup(self) -> None:
        """Build the condition branches and the head (validating hyper-parameters)."""
        _validate_architecture(self)
        branch = functools.partial(
            FNOBranch, self.width, self.modes, self.depth, self.spectral_method, self.precision
        )
        self.condition_branch = {
            name: branch(output_layout="cbxy") for name in self.condition_names
        }
        self.head = FusionHead(
            self.width, self.fusion_width, self.mlp_width, self.precision, layout="cbxy"
        )

    def __call__(self, cond: _BatchedConditions) -> jax.Array:
        """Predict the target from the conditions.

        Args:
            cond: mapping ``name -> [batch, n, n]`` (every name in ``condition_names``).

        Returns:
            ``[batch, n, n]``.
        """
        _validate_conditions(cond, self.condition_names, self.modes)
        features = [self.condition_branch[name](cond[name]) for name in self.condition_names]
        return self.head(jnp.concatenate(features, axis=0))


def settings_from_config(model: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters both FNOs (`ConditionalFNO`, `DeterministicFNO`) take from a
    `model` config section: width, modes, depth, condition_names (at least one) and
    spectral_method."""
    conditions = tuple(model["conditions"])
    if not conditions:
        raise ValueError("model.conditions must name at least one dataset array")
    return dict(
        width=int(model["width"]),
        modes=int(model["modes"]),
        depth=int(model["depth"]),
        condition_names=conditions,
        spectral_method=model["spectral_method"],
    )


def count_params(params: Any) -> int:
    """Number of real parameters in a pytree (a complex leaf counts twice).

    Args:
        params: any pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. ``variables["params"]``
            or the output of ``jax.eval_shape(model.init, ...)``).

    Returns:
        The total number of real scalars.
    """
    total = 0
    for leaf in jax.tree_util.tree_leaves(params):
        size = int(np.prod(np.shape(leaf)))
        total += 2 * size if jnp.issubdtype(leaf.dtype, jnp.complexfloating) else size
    return total
