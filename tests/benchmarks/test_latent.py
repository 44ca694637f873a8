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
    records = {
        r.name: r
        for r in latent.latent_benchmarks(
            True, configs, str(tmp_path), str(tmp_path / "frontier.json")
        )
    }
    parts = ("encode", "latent_sampling", "decode")
    expected = {"latent/pcdm/sample/b4/seconds", "latent/lcdm/sample/b4/seconds"}
    expected |= {f"latent/lcdm/{part}/b4/seconds" for part in parts}
    expected |= {"latent/speedup/b4", "latent/paper_b/flop_ratio", "latent/efficient/speedup/b4"}
    assert set(records) == expected  # no trained study in tmp_path: no accuracy rows
    efficient = records.pop("latent/efficient/speedup/b4")  # no frontier results given: NaN
    assert math.isnan(efficient.value) and not efficient.meets_target
    assert "no frontier results at" in efficient.config["reason"]
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
    from closurejax.models.flops import xla_flops

    config = latent._lcdm_config(study_configs(CONFIGS), True)
    stats = {n: {"mean": 0.0, "std": 1.0} for n in ("omega", "target")}
    sliced = dataclasses.replace(latent_model.from_config(config, stats), batch_chunk=1)
    params = jax.jit(lambda k: sliced.init(k, 16))(jax.random.PRNGKey(0))
    m = sliced.latent_size(16)

    def decode_flops(model, batch: int) -> float:
        z = jax.numpy.zeros((batch, m, m))
        return xla_flops(lambda p, z: model.decode(p, "target", z), params, z)

    flat = latent._unsliced(sliced)
    assert flat.batch_chunk is None
    assert math.isclose(decode_flops(flat, 4), 4 * decode_flops(flat, 1), rel_tol=1e-3)
    assert decode_flops(sliced, 4) < 0.5 * decode_flops(flat, 4)  # the bug it avoids


def _frontier_results(fast16_error: float) -> dict:
    def entry(model: str, kind: str, error: float, seconds: float) -> dict:
        return {
            "model": model,
            "kind": kind,
            "sampler": "euler_maruyama",
            "num_steps": 10,
            "nfe": 10,
            "ensemble_mean": error,
            "seconds_b100": seconds,
        }

    return {
        "cost": "seconds_b100",
        "entries": [
            entry("pcdm", "score", 0.10, 0.025),
            entry("lcdm", "latent", 0.105, 0.08),
            entry("lcdm_fast16", "latent", fast16_error, 0.004),
        ],
    }


@pytest.mark.slow  # two tiny models compiled and timed: ≈ 15 s
def test_efficient_speedup_times_the_cheapest_lcdm_meeting_the_bar_beside_the_pcdm(
    tmp_path: Path,
) -> None:
    import json

    configs = study_configs(CONFIGS)
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps(_frontier_results(0.109)))
    r = latent._efficient_record(True, configs, str(path), 1)
    assert r.name == "latent/efficient/speedup/b4" and r.target == 3.0
    assert r.config["model"] == "lcdm_fast16" and r.config["reference"] == "pcdm"
    assert r.config["frontier_speedup"] == pytest.approx(0.025 / 0.004)
    assert math.isclose(r.value, r.config["pcdm_seconds"] / r.config["lcdm_seconds"])
    assert r.meets_target == (r.value >= 3.0)
    # fast16 11 % worse than the P-CDM: paper B's L-CDM is the cheapest meeting the bar
    path.write_text(json.dumps(_frontier_results(0.111)))
    assert latent._efficient_record(True, configs, str(path), 1).config["model"] == "lcdm"


def test_efficient_speedup_is_nan_with_the_reason_when_no_lcdm_meets_the_bar(
    tmp_path: Path,
) -> None:
    import json

    results = _frontier_results(0.2)
    results["entries"][1]["ensemble_mean"] = 0.2
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps(results))
    r = latent._efficient_record(True, study_configs(CONFIGS), str(path), 1)
    assert math.isnan(r.value) and r.meets_target is False
    assert "no latent model is within 10% of 'pcdm'" in r.config["reason"]
