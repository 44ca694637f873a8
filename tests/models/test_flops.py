"""Tests for the autoencoder FLOP counter of closurejax.models.flops (paper B's L-CDM
autoencoder, arXiv 2506.20771, and the cost-designed variants of issue 11).

Independent checks: a hand count of a small network, and XLA's own count of the lowered program
(`jax.jit(f).lower(...).cost_analysis()["flops"]`, no compilation), which also counts the
elementwise work (GroupNorm, SiLU, softmax, biases) the counter leaves out: the counter must be
just below it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from closurejax.models.autoencoder import Autoencoder
from closurejax.models.flops import autoencoder_flops, conv_flops


def xla_flops(model: Autoencoder, n: int, batch: int) -> dict[str, float]:
    """XLA's FLOP count of the lowered encode and decode programs (parameters as shapes)."""
    x = jax.ShapeDtypeStruct((batch, n, n), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)

    def encode(v, x):
        return model.apply(v, x, method=Autoencoder.encode)

    def decode(v, z):
        return model.apply(v, z, method=Autoencoder.decode)

    z = jax.eval_shape(encode, variables, x)
    out = {}
    for name, fn, arg in (("encode", encode, x), ("decode", decode, z)):
        analysis = jax.jit(fn).lower(variables, arg).cost_analysis()
        if isinstance(analysis, list | tuple):
            analysis = analysis[0]
        out[name] = float(analysis["flops"])
    return out


def test_small_autoencoder_by_hand() -> None:
    """channels (4, 8), attention (2 heads), 8^2 -> 4^2, batch 1, counted layer by layer."""
    model = Autoencoder(channels=(4, 8), num_heads=2, groups=2)
    resblock_8 = 2 * conv_flops(16, 3, 8, 8)  # ResBlock(8) on the 4^2 grid
    attention = 4 * 2 * 16 * 8 * 8 + 4 * 16**2 * 8  # projections, scores + weighted sum
    encode = (
        2 * 64 * 9 * 1 * 4  # conv_in on 8^2
        + 2 * 64 * 9 * 4 * 8
        + 2 * 64 * 9 * 8 * 8
        + 2 * 64 * 4 * 8  # ResBlock(4 -> 8) + skip
        + 2 * 16 * 9 * 8 * 8  # stride-2 conv to 4^2
        + 2 * resblock_8
        + attention  # middle
        + 2 * 16 * 9 * 8 * 1  # conv_out
    )
    decode = (
        2 * 16 * 9 * 1 * 8  # conv_in
        + 2 * resblock_8
        + attention  # middle
        + resblock_8  # level 0's ResBlock(8) on 4^2
        + 2 * 64 * 9 * 8 * 4  # upsampling conv to 8^2, 8 -> 4 channels
        + 2 * 64 * 9 * 4 * 1  # conv_out
    )
    assert (encode, decode) == (230_144, 170_752)
    assert autoencoder_flops(model, 8, 1) == {
        "encode": encode,
        "decode": decode,
        "call": encode + decode,
    }
    assert autoencoder_flops(model, 8, 5)["call"] == 5 * (encode + decode)  # linear in batch


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(channels=(32, 64), num_heads=4, groups=8),
        dict(channels=(32, 64), stem="space_to_depth", stem_factor=2, num_heads=4, groups=8),
        dict(channels=(64,), stem="strided", stem_factor=4, num_heads=4, groups=8),
        dict(channels=(32, 64, 64), num_res_blocks=0, attention=False, groups=8),
        dict(channels=(32, 64), num_res_blocks=2, stem="strided", stem_factor=2, groups=8),
    ],
    ids=["paper_b_layout", "space_to_depth_2", "strided_4", "no_resblocks", "two_resblocks"],
)
def test_counter_matches_xla_cost_analysis(kwargs: dict) -> None:
    """Every variant: counted FLOPs within 2 % below XLA's count (its extra is elementwise)."""
    model = Autoencoder(**kwargs)
    counted = autoencoder_flops(model, 32, 2)
    for part, xla in xla_flops(model, 32, 2).items():
        assert 0.98 * xla <= counted[part] <= xla, (part, counted[part], xla)


def test_paper_b_default_matches_the_latent_benchmark_count() -> None:
    """Paper B's autoencoder at 64^2: the counter gives what XLA's count gives the `latent`
    benchmark group (closurejax.benchmarks.latent) to 0.4 %: 5.78 GFLOP to encode and
    3.83 GFLOP to decode one sample, 962 GFLOP for encode omega + decode H of 100 samples."""
    model = Autoencoder()
    counted = autoencoder_flops(model, 64, 1)
    assert counted == {
        "encode": 5_777_260_544,
        "decode": 3_831_103_488,
        "call": 9_608_364_032,
    }
    for part, xla in xla_flops(model, 64, 1).items():
        assert 0.996 * xla <= counted[part] <= xla, (part, counted[part], xla)
    assert autoencoder_flops(model, 64, 100)["call"] == 100 * counted["call"]


def test_counter_errors() -> None:
    model = Autoencoder(channels=(8, 16), stem="space_to_depth", stem_factor=4, groups=4)
    with pytest.raises(ValueError, match="n=12 is not divisible by the downsampling factor 8"):
        autoencoder_flops(model, 12, 1)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        autoencoder_flops(model, 16, 0)
    with pytest.raises(ValueError, match="must be an Autoencoder"):
        autoencoder_flops("paper_b", 16, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stem='x' is invalid"):
        autoencoder_flops(Autoencoder(stem="x"), 16, 1)
