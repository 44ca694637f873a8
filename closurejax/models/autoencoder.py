"""Convolutional autoencoder of paper B's latent model (L-CDM).

Paper B (Dong, Yang, Wu, arXiv 2506.20771) maps
each 64^2 field (the closure term ``H`` and the vorticity ``omega``, one autoencoder each) to a
deterministic ``1 x 16 x 16`` latent (16x compression, not a VAE) with

    encoder: Conv3x3 (1 -> 64) -> ResBlock(64 -> 128) -> stride-2 Conv3x3
             -> ResBlock(128 -> 256) -> stride-2 Conv3x3
             -> ResBlock(256) -> SelfAttention (GroupNorm + 8-head MHA over the 16x16 tokens)
             -> ResBlock(256) -> GroupNorm -> SiLU -> Conv3x3 (256 -> 1)

and a decoder that mirrors it with nearest-neighbour upsampling:

    decoder: Conv3x3 (1 -> 256) -> ResBlock(256) -> SelfAttention -> ResBlock(256)
             -> ResBlock(256) -> nearest x2 -> Conv3x3 (256 -> 128)
             -> ResBlock(128) -> nearest x2 -> Conv3x3 (128 -> 64)
             -> GroupNorm -> SiLU -> Conv3x3 (64 -> 1).

Here ``channels = (c_0, ..., c_L)`` generalises ``(64, 128, 256)``: the encoder has one level per
channel change ``c_{i-1} -> c_i`` (``num_res_blocks`` ResBlocks, the first changing the channels,
then a stride-2 convolution), so the number of downsamplings is ``L = len(channels) - 1`` and an
``n x n`` field becomes an ``n / 2^L x n / 2^L`` latent (64^2 -> 16^2 by default; with a stem of
factor ``f``, below, ``n / (f 2^L)``).

Cost-designed variants (not in paper B; closurejax issue 11). At 64^2 and batch 100 paper B's
pair of autoencoders (encode omega + decode H) costs ~965 GFLOP, most of it in the 128-channel
ResBlock at full resolution. Options that keep the structure but move work off the fine grid:

* ``stem`` / ``stem_factor = f``: ``"space_to_depth"`` folds ``f x f`` pixel blocks into ``f^2``
  channels (:func:`space_to_depth`) before the first Conv3x3, ``"strided"`` is one circular
  convolution of kernel ``2 f - 1`` and stride ``f``; either way nothing but the stem touches
  the ``n x n`` grid, and the decoder ends with a Conv3x3 to ``f^2`` channels on the ``n / f``
  grid unfolded by :func:`depth_to_space` (sub-pixel output). The latent is ``n / (f 2^L)`` per
  side: 64^2 -> 16^2 with ``f = 4, L = 0`` or ``f = 2, L = 1``, -> 8^2 with ``f = 4, L = 1``;
* narrow early levels: ``channels[0]`` is the width at the finest level (after the stem), and
  with ``num_res_blocks = 0`` a level is only its stride-2 convolution ``c_i -> c_{i+1}``, so no
  ResBlock runs at the level's full width on its finest grid;
* ``attention`` may be switched off (the two middle ResBlocks stay).

The counted FLOPs of each are in :mod:`closurejax.models.flops` (``autoencoder_flops``).

Periodicity. The fields live on the periodic unit square, so every convolution pads circularly
(``padding="CIRCULAR"``). A stride-2 circular convolution samples the output at the even input
pixels, GroupNorm statistics are taken over the whole (periodic) domain, and self-attention has no
positional encoding, so the encoder is exactly equivariant to periodic shifts by multiples of
``2^L`` pixels (a shift by ``2^L`` pixels of the field shifts the latent by one pixel) and the
decoder is equivariant to latent shifts (one latent pixel -> ``2^L`` field pixels), up to float
rounding. With a stem of factor ``f`` the same holds with ``f 2^L`` in place of ``2^L``:
space-to-depth maps a shift by ``f`` pixels to a shift by one block, the stride-``f`` circular
convolution samples its output at the pixels ``f i`` (odd kernel centred on them), and
:func:`depth_to_space` maps a one-pixel shift of its input to an ``f``-pixel shift of the field.

Layouts. Fields are ``[batch, n, n]`` (repository convention); latents keep their channel axis,
``[batch, n / 2^L, n / 2^L, latent_channels]`` (paper B: ``latent_channels = 1``), so that a
latent score model or a KL term can treat the channel explicitly. Inside the networks features are
``[batch, x, y, channels]``.

Parameters (real numbers, measured with ``jax.eval_shape`` and
:func:`closurejax.models.fno.count_params`): at paper B's defaults (``channels=(64, 128, 256)``,
``latent_channels=1``, attention, one ResBlock per level) the autoencoder has 8,991,362 parameters
(encoder 4,516,353, decoder 4,475,009), the published ~9 M. The paper does not spell out where
the decoder changes channels; the literal mirror image of the encoder (upsampling convolution at
``c_i``, then ``ResBlock(c_i -> c_{i-1})``) would have 8,478,978 (decoder 3,962,625, because its
ResBlocks run both 3x3 convolutions at the smaller width), so the decoder keeps ``c_i`` in its
ResBlocks and changes channels in the upsampling convolution, which reproduces the ~9 M.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "STEMS",
    "group_count",
    "space_to_depth",
    "depth_to_space",
    "ResBlock",
    "SelfAttention",
    "Downsample",
    "Upsample",
    "Encoder",
    "Decoder",
    "Autoencoder",
]


STEMS: tuple[str, ...] = ("conv", "space_to_depth", "strided")
"""Encoder stems: paper B's full-resolution Conv3x3 (``stem_factor = 1``); a space-to-depth
rearrangement of ``s x s`` pixel blocks into ``s^2`` channels followed by a Conv3x3 on the
``n / s`` grid; or one circular stride-``s`` convolution of kernel ``2 s - 1`` (``s >= 2``)."""


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_non_negative_int(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _check_channels(channels: Any) -> tuple[int, ...]:
    """Check ``channels`` is a non-empty sequence of positive integers; return it as a tuple."""
    if isinstance(channels, str) or not isinstance(channels, Sequence) or len(channels) == 0:
        raise ValueError(
            f"channels must be a non-empty sequence of positive ints, got {channels!r}"
        )
    for i, c in enumerate(channels):
        _check_positive_int(f"channels[{i}]", c)
    return tuple(int(c) for c in channels)


def _check_finite(name: str, value: jax.Array) -> None:
    """Raise ``ValueError`` if a concrete ``value`` holds NaN or Inf (skipped under tracing)."""
    if isinstance(value, jax.core.Tracer):
        return
    if not np.all(np.isfinite(np.asarray(value))):
        raise ValueError(f"{name} contains non-finite values (NaN or Inf)")


def _as_float(x: jax.Array) -> jax.Array:
    """Cast a non-floating array to float32; leave floating arrays (any precision) unchanged."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def group_count(groups: int, channels: int) -> int:
    """Number of GroupNorm groups for ``channels`` features: ``min(groups, channels)``.

    Args:
        groups: requested number of groups (paper B: 32).
        channels: number of features to normalise.

    Returns:
        ``min(groups, channels)``, so that small test networks (e.g. 8 channels) still work.

    Raises:
        ValueError: if either argument is not a positive integer, or ``min(groups, channels)``
            does not divide ``channels`` (e.g. 32 groups and 48 channels).
    """
    _check_positive_int("groups", groups)
    _check_positive_int("channels", channels)
    g = min(groups, channels)
    if channels % g != 0:
        raise ValueError(
            f"GroupNorm: {g} groups (min(groups={groups}, channels={channels})) do not divide "
            f"{channels} channels; choose channels that are multiples of {g} or change groups"
        )
    return g


def space_to_depth(x: jax.Array, factor: int) -> jax.Array:
    """Fold ``factor x factor`` pixel blocks into channels: ``[B, n, n] -> [B, n/f, n/f, f^2]``.

    Output pixel ``(i, j)`` holds the block of input pixels ``(f i + a, f j + b)``, channel
    ``a f + b``, so a periodic shift of the input by ``f`` pixels shifts the output by one.

    Raises:
        ValueError: unless ``x`` is ``[batch, n, n]`` with ``n`` divisible by ``factor``.
    """
    _check_positive_int("factor", factor)
    if x.ndim != 3 or x.shape[1] % factor or x.shape[2] % factor:
        raise ValueError(
            f"space_to_depth input must be [batch, n, n] with n divisible by {factor}, got "
            f"{x.shape}"
        )
    batch, nx, ny = x.shape
    blocks = x.reshape(batch, nx // factor, factor, ny // factor, factor)
    return blocks.transpose(0, 1, 3, 2, 4).reshape(batch, nx // factor, ny // factor, factor**2)


def depth_to_space(x: jax.Array, factor: int) -> jax.Array:
    """Inverse of :func:`space_to_depth`: ``[B, m, m, f^2] -> [B, m f, m f]``.

    Raises:
        ValueError: unless ``x`` is ``[batch, m, m, factor^2]``.
    """
    _check_positive_int("factor", factor)
    if x.ndim != 4 or x.shape[-1] != factor**2:
        raise ValueError(
            f"depth_to_space input must be [batch, m, m, {factor**2}], got shape {x.shape}"
        )
    batch, mx, my, _ = x.shape
    blocks = x.reshape(batch, mx, my, factor, factor).transpose(0, 1, 3, 2, 4)
    return blocks.reshape(batch, mx * factor, my * factor)


def _conv(features: int, name: str, kernel: int = 3, stride: int = 1) -> nn.Conv:
    """A ``kernel x kernel`` convolution with circular (periodic) padding."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding="CIRCULAR",
        name=name,
    )


def _group_norm(groups: int, channels: int, name: str) -> nn.GroupNorm:
    """GroupNorm with :func:`group_count` groups (epsilon 1e-6, as in the reference code)."""
    return nn.GroupNorm(num_groups=group_count(groups, channels), epsilon=1e-6, name=name)


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """Residual block: ``x + f(x)`` with ``f = (GroupNorm -> SiLU -> Conv3x3) x 2`` (paper B).

    When the channels change, the skip path is a 1x1 convolution. All convolutions pad circularly.

    Attributes:
        out_channels: output features.
        groups: GroupNorm groups (paper B: 32); ``min(groups, channels)`` is used and must divide
            the input and output channels (see :func:`group_count`).
    """

    out_channels: int
    groups: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[batch, h, w, c_in] -> [batch, h, w, out_channels]``.

        Raises:
            ValueError: if ``x`` is not 4-D or the groups do not divide ``c_in`` / ``out_channels``.
        """
        _check_positive_int("out_channels", self.out_channels)
        if x.ndim != 4:
            raise ValueError(f"ResBlock input must be [batch, h, w, channels], got shape {x.shape}")
        c_in = x.shape[-1]
        h = nn.silu(_group_norm(self.groups, c_in, "norm_0")(x))
        h = _conv(self.out_channels, "conv_0")(h)
        h = nn.silu(_group_norm(self.groups, self.out_channels, "norm_1")(h))
        h = _conv(self.out_channels, "conv_1")(h)
        if c_in != self.out_channels:
            x = _conv(self.out_channels, "skip", kernel=1)(x)
        return x + h


class SelfAttention(nn.Module):
    """GroupNorm + multi-head self-attention over the ``h * w`` tokens, with a residual (paper B).

    No positional encoding: the block is equivariant to any permutation of the tokens, in
    particular to periodic shifts.

    Attributes:
        num_heads: attention heads (paper B: 8); must divide the channels.
        groups: GroupNorm groups (see :func:`group_count`).
    """

    num_heads: int = 8
    groups: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[batch, h, w, c] -> [batch, h, w, c]``.

        Raises:
            ValueError: if ``x`` is not 4-D, ``num_heads`` does not divide ``c``, or the groups do
                not divide ``c``.
        """
        _check_positive_int("num_heads", self.num_heads)
        if x.ndim != 4:
            raise ValueError(
                f"SelfAttention input must be [batch, h, w, channels], got shape {x.shape}"
            )
        batch, height, width, channels = x.shape
        if channels % self.num_heads != 0:
            raise ValueError(
                f"SelfAttention: num_heads={self.num_heads} must divide the channels ({channels})"
            )
        h = _group_norm(self.groups, channels, "norm")(x)
        tokens = h.reshape(batch, height * width, channels)
        attended = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            qkv_features=channels,
            out_features=channels,
            name="attention",
        )(tokens, tokens)
        return x + attended.reshape(batch, height, width, channels)


class Downsample(nn.Module):
    """Stride-2 circular Conv3x3: ``[B, h, w, c] -> [B, h/2, w/2, features]`` (``h, w`` even).

    The output pixel ``i`` is centred on input pixel ``2 i``, so a periodic shift of the input by
    2 pixels shifts the output by exactly 1.

    Attributes:
        features: output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[batch, h, w, c] -> [batch, h / 2, w / 2, features]``."""
        if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(
                f"Downsample input must be [batch, h, w, c] with h, w even, got {x.shape}"
            )
        return _conv(self.features, "conv", stride=2)(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a circular Conv3x3 (paper B's decoder).

    Attributes:
        features: output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[batch, h, w, c] -> [batch, 2 h, 2 w, features]``."""
        if x.ndim != 4:
            raise ValueError(f"Upsample input must be [batch, h, w, c], got shape {x.shape}")
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return _conv(self.features, "conv")(x)


# --------------------------------------------------------------------------------------------------
# Encoder, decoder, autoencoder
# --------------------------------------------------------------------------------------------------


def _validate_architecture(module: Encoder | Decoder | Autoencoder) -> tuple[int, ...]:
    """Check the hyper-parameters shared by the encoder, decoder and autoencoder."""
    channels = _check_channels(module.channels)
    _check_positive_int("latent_channels", module.latent_channels)
    _check_non_negative_int("num_res_blocks", module.num_res_blocks)
    _check_positive_int("num_heads", module.num_heads)
    if module.stem not in STEMS:
        raise ValueError(f"stem={module.stem!r} is invalid; allowed: {STEMS}")
    _check_positive_int("stem_factor", module.stem_factor)
    if (module.stem == "conv") != (module.stem_factor == 1):
        allowed = "1" if module.stem == "conv" else "an integer >= 2 (e.g. 2 or 4)"
        raise ValueError(
            f"stem_factor={module.stem_factor!r} is invalid for stem={module.stem!r}; allowed: "
            f"{allowed}"
        )
    for c in channels:
        group_count(module.groups, c)
    if module.attention and channels[-1] % module.num_heads != 0:
        raise ValueError(
            f"num_heads={module.num_heads} must divide the last channel count channels[-1]="
            f"{channels[-1]} (the attention width)"
        )
    return channels


class Encoder(nn.Module):
    """Paper B's encoder: ``[batch, n, n] -> [batch, n / (f 2^L), n / (f 2^L), latent_channels]``.

    ``L = len(channels) - 1`` downsamplings after a stem of factor ``f = stem_factor`` (paper B:
    ``f = 1``). See the module docstring for the layer sequence.

    Attributes:
        channels: ``(c_0, ..., c_L)``; paper B: ``(64, 128, 256)``.
        latent_channels: channels of the latent (paper B: 1).
        attention: whether to put a :class:`SelfAttention` between the two middle ResBlocks.
        num_res_blocks: ResBlocks per level (paper B: 1); the first of a level changes channels.
            ``0``: a level is its stride-2 convolution alone (which then changes the channels).
        num_heads: attention heads (paper B: 8).
        groups: GroupNorm groups (paper B: 32).
        stem: one of :data:`STEMS` (paper B: ``"conv"``).
        stem_factor: downsampling of the stem (1 for ``"conv"``, ``>= 2`` otherwise).
    """

    channels: Sequence[int] = (64, 128, 256)
    latent_channels: int = 1
    attention: bool = True
    num_res_blocks: int = 1
    num_heads: int = 8
    groups: int = 32
    stem: str = "conv"
    stem_factor: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Encode fields (no input validation: :class:`Autoencoder` validates at the boundary).

        Args:
            x: ``[batch, n, n]`` with ``n`` divisible by ``2^L``.

        Returns:
            ``[batch, n / 2^L, n / 2^L, latent_channels]``.
        """
        channels = _validate_architecture(self)
        x, factor = _as_float(x), self.stem_factor
        if self.stem == "conv":
            h = _conv(channels[0], "conv_in")(x[..., None])
        elif self.stem == "space_to_depth":
            h = _conv(channels[0], "conv_in")(space_to_depth(x, factor))
        else:  # "strided"
            h = _conv(channels[0], "conv_in", kernel=2 * factor - 1, stride=factor)(x[..., None])
        for level, c in enumerate(channels[1:]):
            for block in range(self.num_res_blocks):
                h = ResBlock(c, self.groups, name=f"down_{level}_block_{block}")(h)
            h = Downsample(c, name=f"down_{level}_downsample")(h)
        h = ResBlock(channels[-1], self.groups, name="mid_block_0")(h)
        if self.attention:
            h = SelfAttention(self.num_heads, self.groups, name="mid_attention")(h)
        h = ResBlock(channels[-1], self.groups, name="mid_block_1")(h)
        h = nn.silu(_group_norm(self.groups, channels[-1], "norm_out")(h))
        return _conv(self.latent_channels, "conv_out")(h)


class Decoder(nn.Module):
    """Paper B's decoder: ``[batch, m, m, latent_channels] -> [batch, m 2^L, m 2^L]``.

    Mirrors :class:`Encoder`: Conv3x3 -> ResBlock -> [SelfAttention] -> ResBlock, then per level
    ``i = L .. 1``: ``num_res_blocks`` ResBlocks at ``c_i``, nearest x2 upsampling and a Conv3x3
    ``c_i -> c_{i-1}``; then GroupNorm -> SiLU -> Conv3x3 -> 1 (see the module docstring for why
    the channels change in the upsampling convolution).

    Attributes:
        channels, latent_channels, attention, num_res_blocks, num_heads, groups, stem,
            stem_factor: as in :class:`Encoder` (``channels`` listed from the finest level, as
            for the encoder). With ``stem_factor = f > 1`` the output convolution gives ``f^2``
            channels on the ``n / f`` grid, unfolded by :func:`depth_to_space`.
    """

    channels: Sequence[int] = (64, 128, 256)
    latent_channels: int = 1
    attention: bool = True
    num_res_blocks: int = 1
    num_heads: int = 8
    groups: int = 32
    stem: str = "conv"
    stem_factor: int = 1

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """Decode latents (no input validation: :class:`Autoencoder` validates at the boundary).

        Args:
            z: ``[batch, m, m, latent_channels]``.

        Returns:
            ``[batch, m 2^L, m 2^L]``.
        """
        channels = _validate_architecture(self)
        h = _conv(channels[-1], "conv_in")(_as_float(z))
        h = ResBlock(channels[-1], self.groups, name="mid_block_0")(h)
        if self.attention:
            h = SelfAttention(self.num_heads, self.groups, name="mid_attention")(h)
        h = ResBlock(channels[-1], self.groups, name="mid_block_1")(h)
        levels = len(channels) - 1
        for level in reversed(range(levels)):
            for block in range(self.num_res_blocks):
                h = ResBlock(channels[level + 1], self.groups, name=f"up_{level}_block_{block}")(h)
            h = Upsample(channels[level], name=f"up_{level}_upsample")(h)
        h = nn.silu(_group_norm(self.groups, channels[0], "norm_out")(h))
        if self.stem == "conv":
            return _conv(1, "conv_out")(h)[..., 0]
        # sub-pixel output: f^2 channels on the n / f grid, unfolded into f x f pixel blocks
        return depth_to_space(_conv(self.stem_factor**2, "conv_out")(h), self.stem_factor)


class Autoencoder(nn.Module):
    """Deterministic convolutional autoencoder of paper B (one per field: ``H`` and ``omega``).

    Usage::

        model = Autoencoder()
        params = model.init(key, x)["params"]                  # x: [B, 64, 64]
        x_hat, z = model.apply({"params": params}, x)          # [B, 64, 64], [B, 16, 16, 1]
        z = model.apply({"params": params}, x, method=Autoencoder.encode)
        x_hat = model.apply({"params": params}, z, method=Autoencoder.decode)

    Attributes:
        channels: ``(c_0, ..., c_L)``; paper B: ``(64, 128, 256)`` (``L = 2``: 64^2 -> 16^2).
        latent_channels: channels of the latent (paper B: 1).
        attention: self-attention in the middle of the encoder and decoder (paper B: on).
        num_res_blocks: ResBlocks per level (paper B: 1; 0 allowed).
        num_heads: attention heads (paper B: 8).
        groups: GroupNorm groups (paper B: 32).
        stem: ``"conv"`` (paper B), ``"space_to_depth"`` or ``"strided"`` (:data:`STEMS`).
        stem_factor: the stem's downsampling ``f`` (paper B: 1); the latent is
            ``n / (f 2^L)`` per side.
    """

    channels: Sequence[int] = (64, 128, 256)
    latent_channels: int = 1
    attention: bool = True
    num_res_blocks: int = 1
    num_heads: int = 8
    groups: int = 32
    stem: str = "conv"
    stem_factor: int = 1

    def setup(self) -> None:
        """Build the encoder and decoder (validating hyper-parameters)."""
        _validate_architecture(self)
        kwargs = dict(
            channels=tuple(self.channels),
            latent_channels=self.latent_channels,
            attention=self.attention,
            num_res_blocks=self.num_res_blocks,
            num_heads=self.num_heads,
            groups=self.groups,
            stem=self.stem,
            stem_factor=self.stem_factor,
        )
        self.encoder = Encoder(**kwargs)
        self.decoder = Decoder(**kwargs)

    @property
    def downsampling_factor(self) -> int:
        """``stem_factor * 2^L`` with ``L = len(channels) - 1``: field size / latent size."""
        return self.stem_factor * 2 ** (len(self.channels) - 1)

    def latent_shape(self, field_shape: Sequence[int]) -> tuple[int, int, int, int]:
        """Latent shape ``(batch, n / 2^L, n / 2^L, latent_channels)`` of a ``[batch, n, n]`` field.

        Raises:
            ValueError: as :meth:`encode` for an invalid field shape.
        """
        batch, n = self._check_field_shape(tuple(field_shape))
        m = n // self.downsampling_factor
        return (batch, m, m, self.latent_channels)

    def _check_field_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """Check ``shape`` is ``(batch, n, n)`` with ``2^L | n``; return ``(batch, n)``."""
        if len(shape) != 3 or shape[1] != shape[2] or shape[0] == 0:
            raise ValueError(f"x must be a square field [batch, n, n] with batch >= 1, got {shape}")
        factor = self.downsampling_factor
        if shape[1] % factor != 0:
            stem = "" if self.stem_factor == 1 else f"stem_factor={self.stem_factor} * "
            raise ValueError(
                f"x has shape {shape}: the grid size n={shape[1]} must be divisible by "
                f"{stem}2^(len(channels) - 1) = {factor} (channels={tuple(self.channels)})"
            )
        return shape[0], shape[1]

    def encode(self, x: jax.Array) -> jax.Array:
        """Encode fields to latents.

        Args:
            x: ``[batch, n, n]`` float, ``n`` divisible by ``2^(len(channels) - 1)``.

        Returns:
            ``[batch, n / 2^L, n / 2^L, latent_channels]``.

        Raises:
            ValueError: for a non-square or non-3-D input, ``n`` not divisible by ``2^L``, or
                non-finite values (checked only when ``x`` is concrete, not under tracing).
        """
        self._check_field_shape(tuple(np.shape(x)))
        _check_finite("x", x)
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        """Decode latents to fields.

        Args:
            z: ``[batch, m, m, latent_channels]``.

        Returns:
            ``[batch, m 2^L, m 2^L]``.

        Raises:
            ValueError: for a wrong shape or non-finite (concrete) values.
        """
        shape = tuple(np.shape(z))
        if (
            len(shape) != 4
            or shape[1] != shape[2]
            or shape[3] != self.latent_channels
            or shape[0] == 0
        ):
            raise ValueError(
                f"z must be a latent [batch, m, m, latent_channels={self.latent_channels}] with "
                f"batch >= 1, got shape {shape}"
            )
        _check_finite("z", z)
        return self.decoder(z)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Encode and decode: ``[B, n, n] -> ([B, n, n] reconstruction, [B, n/2^L, n/2^L, C_z])``.

        Raises:
            ValueError: as :meth:`encode`.
        """
        z = self.encode(x)
        return self.decoder(z), z
