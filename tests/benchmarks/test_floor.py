"""The FFT floor: every transform and draw of a chain is kept and timed (no physics needed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.benchmarks import floor as bench


def _fft_ops(f: Callable[..., Any], *args: Any) -> list[str]:
    """Shapes of the fft ops in the optimised HLO of jitted `f` at `args`."""
    text = f.lower(*args).compile().as_text()
    return re.findall(r"= (\S+?)\{[^}]*\} fft\(", text)


@pytest.mark.parametrize(("n_forward", "n_inverse"), [(1, 4), (3, 2), (2, 0), (0, 3)])
def test_fft_chain_keeps_every_transform(n_forward: int, n_inverse: int) -> None:
    shape = (2, 8, 8)
    r = jax.random.normal(jax.random.key(0), shape)
    c = jnp.fft.rfft2(r)
    separate = bench.make_fft_chain(shape, n_forward, n_inverse, steps=3, stack=False)
    ops = _fft_ops(separate, r, c)
    assert ops.count("c64[2,8,5]") == n_forward
    assert ops.count("f32[2,8,8]") == n_inverse
    # Stacked: runs of same-direction transforms share a call over an axis [2, k, 8, ·].
    stacked = bench.make_fft_chain(shape, n_forward, n_inverse, steps=3, stack=True)
    ops = _fft_ops(stacked, r, c)
    per_call = [int(o.split(",")[1]) if o.count(",") == 3 else 1 for o in ops]
    assert sum(per_call) == n_forward + n_inverse
    assert sum(k for o, k in zip(ops, per_call, strict=True) if o.startswith("c64")) == n_forward
    # Values stay O(1) (no overflow or underflow to change the FFT's cost).
    for f in (separate, stacked):
        out_r, out_c = f(r, c)
        assert 0.1 < float(jnp.std(out_r)) < 10
        assert np.isfinite(np.asarray(out_c)).all()


def test_fft_floor_validates_and_times() -> None:
    t = bench.fft_floor((1, 8, 8), 3, repeats=2)
    assert 0 < t < 5
    with pytest.raises(ValueError, match="count"):
        bench.fft_floor((8, 8), 3, n_forward=1, n_inverse=1)
    with pytest.raises(ValueError, match="two axes"):
        bench.fft_floor((8,), 2)
    with pytest.raises(ValueError, match="dtype"):
        bench.fft_floor((8, 8), 2, jnp.int32)
    # draws alone are a floor too; no work at all, or a negative count, is refused
    assert 0 < bench.fft_floor((2, 8, 8), n_forward=0, n_inverse=0, normals=64, repeats=2) < 5
    with pytest.raises(ValueError, match="positive sum"):
        bench.fft_floor((8, 8), n_forward=0, n_inverse=0)
    with pytest.raises(ValueError, match="normals"):
        bench.fft_floor((8, 8), 2, normals=-1)


def test_floor_chain_draws_fresh_normals_every_iteration() -> None:
    """The draws reach the result (no DCE) and differ between iterations (no CSE): each is
    averaged into a carried array d ← (d + z)/2, whose entries end up N(0, 1/3) (geometric sum of
    fresh draws; a repeated draw would give variance 1), and r carries 1e-9 × the sum of d."""
    shape = (64, 8, 8)
    r = jnp.zeros(shape)
    c = jnp.fft.rfft2(r)
    steps, normals = 50, 3000
    out_r, _ = bench.make_fft_chain(shape, 0, 0, steps, normals=normals)(r, c)
    sums = np.asarray(out_r[:, 0, 0], np.float64) / 1e-9  # per field: sum of d, N(0, normals/3)
    assert len(set(np.round(sums, 3))) == 64  # each field its own draws
    # std √1000 ≈ 31.6 from fresh draws (√3000 ≈ 54.8 if one draw were reused); 64 samples
    assert 24 < np.std(sums) < 40 and abs(np.mean(sums)) < 15
    text = str(jax.make_jaxpr(bench.make_fft_chain(shape, 0, 0, steps, normals=normals))(r, c))
    assert "random_bits" in text or "threefry" in text
