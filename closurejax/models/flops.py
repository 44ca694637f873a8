"""FLOP counts of the FNO score network and of paper B's autoencoders, and the machine's dense
matmul rate.

Every benchmark compares a measured time with its floor. The floor of a network forward is
``FLOPs / matmul rate``: this module counts the dense FLOPs of
:class:`closurejax.models.fno.ConditionalFNO` (and :class:`~closurejax.models.fno.DeterministicFNO`)
exactly as the code computes them, and measures the rate with one large jitted matmul.

Conventions:

* a real multiply-add is 2 FLOPs, so a dense layer ``rows x in -> out`` costs ``2 rows in out``;
  a complex multiply-add is 8 real FLOPs (4 multiplies, 4 adds);
* ``"dft"`` spectral convolutions are counted matmul by matmul, as in
  :func:`closurejax.models.spectral.spectral_conv_dft` (the forward along ``y`` acts on real
  data, so ``2 (c b nx) ny (2m)``; along ``x`` on the ``m`` kept columns
  ``2 (c b 2m) nx (4m)``; the per-mode complex mixing ``8 b (2m m) c_in c_out``; the inverse
  along ``x`` ``2 (o b 2m) (2m) (2 nx)`` and along ``y`` ``2 (o b nx) (2m) ny``);
* ``"fft"`` spectral convolutions count the same mode mixing plus the conventional estimate
  ``2.5 N log2 N`` for a real 2-D FFT of ``N = nx ny`` points (half of ``5 N log2 N`` for a
  complex FFT), one ``rfft2`` per input channel and one ``irfft2`` per output channel;
* a convolution with a ``k x k`` kernel from ``c_in`` to ``c_out`` channels producing ``P``
  output pixels is a dense layer per output pixel, ``2 P k^2 c_in c_out`` (circular padding adds
  no FLOPs); self-attention over ``T`` tokens of ``c`` channels costs its four ``c x c``
  projections ``8 T c^2`` plus the scores and the weighted sum ``4 T^2 c``
  (:func:`autoencoder_flops`, for :class:`closurejax.models.autoencoder.Autoencoder`,
  paper B's L-CDM autoencoder, arXiv 2506.20771);
* elementwise work (GELU, SiLU, bias and residual additions, the Gaussian Fourier features,
  GroupNorm, the softmax) is
  not counted: it is memory-bound, and its cost shows up as the gap between the measured time
  and the FLOP floor.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.models.autoencoder import Autoencoder, _validate_architecture
from closurejax.models.fno import ConditionalFNO, DeterministicFNO
from closurejax.models.spectral import resolve_spectral_method

__all__ = [
    "dense_flops",
    "fft2_flops",
    "spectral_conv_flops",
    "fno_flops_breakdown",
    "fno_forward_flops",
    "conv_flops",
    "autoencoder_flops",
    "matmul_rate",
    "xla_flops",
]

_PARTS: tuple[str, ...] = ("encode", "denoise", "call")


def _positive(name: str, value: Any) -> int:
    """Return ``value`` as an int, raising ``ValueError`` unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def dense_flops(rows: int, in_features: int, out_features: int) -> int:
    """FLOPs of ``[rows, in] @ [in, out]``: ``2 rows in out`` (bias additions not counted)."""
    return 2 * rows * in_features * out_features


def fft2_flops(nx: int, ny: int) -> int:
    """Conventional FLOP estimate of one real 2-D FFT (``rfft2`` or ``irfft2``) of ``nx x ny``.

    ``2.5 N log2 N`` with ``N = nx ny``, rounded to an integer.
    """
    size = nx * ny
    return round(2.5 * size * math.log2(size))


def spectral_conv_flops(
    batch: int,
    n: int,
    in_channels: int,
    out_channels: int,
    modes: int,
    method: str,
) -> int:
    """FLOPs of one :class:`~closurejax.models.fno.SpectralConv2d` on ``[batch, n, n, in]``.

    Args:
        batch: batch size.
        n: grid size (``n x n``).
        in_channels: input channels ``c``.
        out_channels: output channels ``o``.
        modes: kept modes per direction ``m``.
        method: ``"dft"``, ``"fft"`` or ``"auto"`` (resolved for the current backend).

    Returns:
        The FLOP count described in the module docstring.
    """
    b, c, o, m = batch, in_channels, out_channels, modes
    mixing = 8 * b * (2 * m * m) * c * o
    method = resolve_spectral_method(method)
    if method == "fft":
        return mixing + (c + o) * b * fft2_flops(n, n)
    forward = 2 * (c * b * n) * n * (2 * m) + 2 * (c * b * 2 * m) * n * (4 * m)
    inverse = 2 * (o * b * 2 * m) * (2 * m) * (2 * n) + 2 * (o * b * n) * (2 * m) * n
    return forward + mixing + inverse


def _branch_flops(width: int, modes: int, depth: int, n: int, batch: int, method: str) -> int:
    """FLOPs of one :class:`~closurejax.models.fno.FNOBranch` without embedding biases."""
    pixels = batch * n * n
    lift = dense_flops(pixels, 3, width)
    layer = spectral_conv_flops(batch, n, width, width, modes, method)
    layer += dense_flops(pixels, width, width)
    return lift + depth * layer


def _head_flops(model: ConditionalFNO | DeterministicFNO, in_channels: int, pixels: int) -> int:
    """FLOPs of the :class:`~closurejax.models.fno.FusionHead` on ``pixels`` points."""
    fusion = 2 * model.width if model.fusion_width is None else model.fusion_width
    sizes = (in_channels, fusion, model.width, model.width, model.mlp_width, 1)
    return sum(dense_flops(pixels, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def fno_flops_breakdown(
    model: ConditionalFNO | DeterministicFNO, n: int, batch: int, method: str | None = None
) -> dict[str, int]:
    """Dense FLOPs of one forward pass, split as the sampler uses it.

    Args:
        model: a :class:`ConditionalFNO` or :class:`DeterministicFNO` (its hyper-parameters are
            read; no parameters are needed).
        n: grid size.
        batch: batch size.
        method: ``"dft" | "fft" | "auto"``; ``None`` uses ``model.spectral_method``.

    Returns:
        ``{"encode": ..., "denoise": ..., "call": ...}``: the condition branches; the noise
        embedding, target branch and head; and their sum (one ``__call__``). For a
        :class:`DeterministicFNO`, ``"denoise"`` is its head alone.

    Raises:
        ValueError: for a non-positive ``n`` or ``batch``, an unknown method, a grid smaller than
            ``2 * modes``, or an unsupported model type.
    """
    n, batch = _positive("n", n), _positive("batch", batch)
    if not isinstance(model, ConditionalFNO | DeterministicFNO):
        raise ValueError(f"model must be a ConditionalFNO or DeterministicFNO, got {type(model)}")
    if n < 2 * model.modes:
        raise ValueError(f"grid size {n} is smaller than 2 * modes = {2 * model.modes}")
    method = resolve_spectral_method(model.spectral_method if method is None else method)
    k, width, pixels = len(model.condition_names), model.width, batch * n * n
    branch = _branch_flops(width, model.modes, model.depth, n, batch, method)
    encode = k * branch
    if isinstance(model, DeterministicFNO):
        denoise = _head_flops(model, k * width, pixels)
    else:
        embedding = dense_flops(batch, model.embed_dim, model.embed_dim)
        embedding += model.depth * dense_flops(batch, model.embed_dim, width)
        denoise = embedding + branch + _head_flops(model, (k + 1) * width, pixels)
    return {"encode": encode, "denoise": denoise, "call": encode + denoise}


def fno_forward_flops(
    model: ConditionalFNO | DeterministicFNO,
    n: int,
    batch: int,
    method: str | None = None,
    part: str = "call",
) -> int:
    """Dense FLOPs of ``part`` (``"encode"``, ``"denoise"`` or ``"call"``) of one forward pass.

    See :func:`fno_flops_breakdown` for the arguments.
    """
    if part not in _PARTS:
        raise ValueError(f"part must be one of {_PARTS}, got {part!r}")
    return fno_flops_breakdown(model, n, batch, method)[part]


def conv_flops(pixels: int, kernel: int, in_channels: int, out_channels: int) -> int:
    """FLOPs of a ``kernel x kernel`` convolution with ``pixels`` output pixels (batch included):
    ``2 pixels kernel^2 in out`` (bias additions not counted)."""
    return dense_flops(pixels, kernel * kernel * in_channels, out_channels)


def _resblock_flops(pixels: int, c_in: int, c_out: int) -> int:
    """Two Conv3x3 and, when the channels change, the 1x1 skip convolution."""
    flop = conv_flops(pixels, 3, c_in, c_out) + conv_flops(pixels, 3, c_out, c_out)
    return flop + (conv_flops(pixels, 1, c_in, c_out) if c_in != c_out else 0)


def _attention_flops(batch: int, tokens: int, channels: int) -> int:
    """q, k, v and output projections plus scores and weighted sum (all heads together)."""
    return 4 * dense_flops(batch * tokens, channels, channels) + 4 * batch * tokens**2 * channels


def autoencoder_flops(model: Autoencoder, n: int, batch: int) -> dict[str, int]:
    """Dense FLOPs of paper B's autoencoder (or a cost-designed variant) on ``[batch, n, n]``.

    Counted layer by layer as :class:`~closurejax.models.autoencoder.Encoder` and
    :class:`~closurejax.models.autoencoder.Decoder` run them (module docstring: convolutions,
    attention; no elementwise work). Paper B's default at ``n = 64``: encoder 5.78 GFLOP and
    decoder 3.84 GFLOP per sample, so encoding omega and decoding H for 100 samples is
    ~962 GFLOP.

    Args:
        model: an :class:`Autoencoder` (only its hyper-parameters are read).
        n: field grid size (``n x n``), divisible by ``model.downsampling_factor``.
        batch: batch size.

    Returns:
        ``{"encode": ..., "decode": ..., "call": ...}`` (``call`` = encode + decode).

    Raises:
        ValueError: for a non-positive ``n`` or ``batch``, ``n`` not divisible by the
            downsampling factor, or an invalid architecture.
    """
    n, batch = _positive("n", n), _positive("batch", batch)
    if not isinstance(model, Autoencoder):
        raise ValueError(f"model must be an Autoencoder, got {type(model)}")
    channels = _validate_architecture(model)
    if n % model.downsampling_factor:
        raise ValueError(
            f"grid size n={n} is not divisible by the downsampling factor "
            f"{model.downsampling_factor} of the autoencoder"
        )
    f, levels, c_z = model.stem_factor, len(channels) - 1, model.latent_channels
    sizes = [n // (f * 2**i) for i in range(levels + 1)]  # grid of each level after the stem
    pix = [batch * r * r for r in sizes]
    bottom, c_last = pix[-1], channels[-1]
    middle = 2 * _resblock_flops(bottom, c_last, c_last)
    if model.attention:
        middle += _attention_flops(batch, sizes[-1] ** 2, c_last)

    # encoder: stem, levels (ResBlocks at c_{i+1} on grid i, stride-2 conv to grid i+1), middle
    if model.stem == "conv":
        encode = conv_flops(pix[0], 3, 1, channels[0])
    elif model.stem == "space_to_depth":
        encode = conv_flops(pix[0], 3, f * f, channels[0])
    else:
        encode = conv_flops(pix[0], 2 * f - 1, 1, channels[0])
    for i in range(levels):
        c_in = channels[i]
        for _ in range(model.num_res_blocks):
            encode += _resblock_flops(pix[i], c_in, channels[i + 1])
            c_in = channels[i + 1]
        encode += conv_flops(pix[i + 1], 3, c_in, channels[i + 1])
    encode += middle + conv_flops(bottom, 3, c_last, c_z)

    # decoder: conv_in, middle, levels (ResBlocks at c_{i+1} on grid i+1, upsample conv to grid
    # i with c_i channels), output conv (1 channel, or f^2 on the n / f grid)
    decode = conv_flops(bottom, 3, c_z, c_last) + middle
    for i in reversed(range(levels)):
        decode += model.num_res_blocks * _resblock_flops(
            pix[i + 1], channels[i + 1], channels[i + 1]
        )
        decode += conv_flops(pix[i], 3, channels[i + 1], channels[i])
    decode += conv_flops(pix[0], 3, channels[0], f * f)
    return {"encode": encode, "decode": decode, "call": encode + decode}


def matmul_rate(dtype: Any = jnp.float32, size: int = 2048, repeats: int = 5) -> float:
    """Measured dense matmul rate of the default device, in FLOP/s.

    Times a jitted ``[size, size] @ [size, size]`` (``2 size^3`` FLOPs) ``repeats`` times after a
    compile-and-warm-up call and returns ``2 size^3 / median time``.

    Args:
        dtype: element type of the matrices.
        size: matrix size (2048 by default; smaller for quick checks).
        repeats: timed runs (the median is used).

    Returns:
        FLOP/s.
    """
    size, repeats = _positive("size", size), _positive("repeats", repeats)
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size)).astype(dtype)
    b = jax.random.normal(key_b, (size, size)).astype(dtype)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / float(np.median(times))


def xla_flops(fn: Any, *args: Any) -> float:
    """XLA's FLOP count of ``fn(*args)`` from the lowered program, NaN where the backend gives
    none. Loop-free functions only: XLA counts a loop body (``lax.scan``, ``lax.map``) once, so
    count a sampler as its parts (one score evaluation × NFE) and a batch-sliced model unsliced.
    """
    try:
        analysis = jax.jit(fn).lower(*args).cost_analysis()
    except Exception:  # noqa: BLE001 — an optional figure: some backends do not implement it
        return math.nan
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", math.nan))
