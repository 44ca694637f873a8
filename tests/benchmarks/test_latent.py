"""The "latent" benchmark group (paper B: P-CDM against L-CDM cost) in quick mode."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from closurejax.benchmarks import latent
from tests.benchmarks.study_configs import study_configs

CONFIGS = latent.CONFIGS["latent"]


@pytest.mark.slow  # ≈ 20 s on 2 cores; `make test-slow` (and CI) runs it
def test_latent_group_quick(tmp_path: Path) -> None:
    configs = study_configs(CONFIGS)
    records = {r.name: r for r in latent.latent_benchmarks(True, configs, str(tmp_path))}
    parts = ("encode", "latent_sampling", "decode")
    expected = {"latent/pcdm/sample/b4/seconds", "latent/lcdm/sample/b4/seconds"}
    expected |= {f"latent/lcdm/{part}/b4/seconds" for part in parts}
    expected |= {"latent/speedup/b4", "latent/paper_b/flop_ratio"}
    assert set(records) == expected  # no trained study in tmp_path: no accuracy rows
    for r in records.values():
        assert math.isfinite(r.value) and r.value > 0
    speedup = records["latent/speedup/b4"]
    pcdm, lcdm = records["latent/pcdm/sample/b4/seconds"], records["latent/lcdm/sample/b4/seconds"]
    assert math.isclose(speedup.value, pcdm.value / lcdm.value)
    assert speedup.target == 3.0 and speedup.meets_target == (speedup.value >= 3.0)
    assert speedup.unit == "ratio" and speedup.config["paper_b_gpu_speedup"] == 2.8
    # both at paper B's sampler; the FLOP counts add up over the L-CDM's parts
    for r in (pcdm, lcdm):
        assert r.config["nfe"] == 10 and r.config["t_max"] == 0.4 and r.config["batch"] == 4
    assert lcdm.config["latent"] == [8, 8] and lcdm.config["ae_attention"] is True
    flops = lcdm.config["part_flops"]
    assert all(flops[p] > 0 for p in parts)
    assert math.isclose(lcdm.config["flops"], sum(flops.values()))
    assert pcdm.config["flops"] == pcdm.config["flops_encode"] + 10 * pcdm.config["flops_per_step"]
    # the FLOP-floor ratio: the L-CDM's seconds over its counted FLOPs at the measured rate
    ratio = records["latent/paper_b/flop_ratio"]
    floor = lcdm.config["flops"] / ratio.config["matmul_flops_per_s"]
    assert math.isclose(ratio.value, lcdm.value / floor)
    assert ratio.target == 1.5 and ratio.meets_target == (ratio.value <= 1.5)


def test_latent_group_is_registered() -> None:
    from experiments import benchmark

    assert benchmark.GROUPS["latent"] is latent.latent_benchmarks
    assert benchmark.CONFIGS["latent"] == CONFIGS


@pytest.mark.slow  # ≈ 20 s on 2 cores
def test_flops_are_counted_on_the_whole_batch_not_one_slice() -> None:
    """XLA counts a loop body once: a network sliced into a lax.map over the batch would be
    counted for one slice. `_unsliced` counts the same model in one call: batch 4 costs 4×
    batch 1, while the sliced count (slices of 1) stays at one sample's."""
    import dataclasses

    import jax

    from closurejax.diffusion import latent_model

    config = latent._lcdm_config(study_configs(CONFIGS), True)
    stats = {n: {"mean": 0.0, "std": 1.0} for n in ("omega", "target")}
    sliced = dataclasses.replace(latent_model.from_config(config, stats), batch_chunk=1)
    params = jax.jit(lambda k: sliced.init(k, 16))(jax.random.PRNGKey(0))
    m = sliced.latent_size(16)

    def decode_flops(model, batch: int) -> float:
        z = jax.numpy.zeros((batch, m, m))
        return latent._flops(lambda p, z: model.decode(p, "target", z), params, z)

    flat = latent._unsliced(sliced)
    assert flat.batch_chunk is None
    assert math.isclose(decode_flops(flat, 4), 4 * decode_flops(flat, 1), rel_tol=1e-3)
    assert decode_flops(sliced, 4) < 0.5 * decode_flops(flat, 4)  # the bug it avoids
