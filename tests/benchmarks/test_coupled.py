"""The "coupled" benchmark group at quick sizes: record names, units, values and consistency."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.benchmarks import coupled as cb
from closurejax.benchmarks import records as bench
from closurejax.simulation import coupled
from tests.benchmarks.study_configs import study_configs

METRICS = {
    "step_seconds": "s",
    "member_step_seconds": "s",
    "no_closure_ratio": "ratio",
    "network_seconds": "s",
    "network_ratio": "ratio",
    "paper_run_seconds": "s",
}
BASELINE_METRICS = ("step_seconds", "member_step_seconds", "paper_run_seconds", "floor_ratio")
BASELINE_UNITS = {"floor_ratio": "ratio"}


@pytest.fixture(scope="module")
def records() -> dict[str, bench.BenchRecord]:
    out = cb.coupled_benchmarks(True, study_configs(cb.CONFIGS["coupled"]))
    names = [r.name for r in out]
    assert len(names) == len(set(names)), names
    return {r.name: r for r in out}


@pytest.mark.slow  # the quick coupled group: ≈ 45 s on 2 cores
def test_quick_group_names_units_and_values(records: dict[str, bench.BenchRecord]) -> None:
    sz = cb.sizes(quick=True)
    assert sz.n == 16 and sz.tiny and all(k % cb.PAPER["every"] == 0 for k in sz.steps.values())
    expected = {}
    for m in sz.members:
        expected |= {
            f"coupled/none/m{m}/{k}": BASELINE_UNITS.get(k) or METRICS[k] for k in BASELINE_METRICS
        }
        expected[f"coupled/dns/m{m}/member_step_seconds"] = "s"
        for case in ("pcdm", "lcdm"):
            expected |= {f"coupled/{case}/m{m}/{k}": unit for k, unit in METRICS.items()}
    assert {name: r.unit for name, r in records.items()} == expected
    assert cb.GROUPS == {"coupled": cb.coupled_benchmarks}
    for r in records.values():
        assert math.isfinite(r.value) and r.value > 0, r
        assert r.device == bench.device_description()
        assert r.config["n"] == 16 and r.config["members"] in sz.members
        if r.name.endswith("/network_ratio"):
            assert r.target == cb.NETWORK_RATIO_TARGET
            assert r.meets_target == (r.value <= r.target)
        else:
            assert r.target is None and r.meets_target is None
    pcdm = records[f"coupled/pcdm/m{sz.members[0]}/network_ratio"].config
    assert pcdm["nfe"] == 2 and pcdm["score_calls"] == 2 and pcdm["encode_calls"] == 1
    assert pcdm["nonfinite_members"] == 0
    assert pcdm["score_single_call_seconds"] > 0
    lcdm = records[f"coupled/lcdm/m{sz.members[0]}/network_ratio"].config
    assert lcdm["nfe"] == 2 and lcdm["score_calls"] == 2 and lcdm["encode_calls"] == 1
    assert lcdm["decode_calls"] == 1 and lcdm["nonfinite_members"] == 0


def test_full_sizes_are_the_papers_setting() -> None:
    full = cb.sizes(quick=False)
    assert full.n == 64 and full.members == (1, 100) and not full.tiny
    assert all(full.steps[m] % cb.PAPER["every"] == 0 for m in full.members)
    assert all(full.baseline_steps[m] % cb.PAPER["every"] == 0 for m in full.members)
    assert cb.PAPER["every"] == 5 and cb.PAPER["reuse_noise"] == 5e-5


@pytest.mark.slow  # the quick coupled group: ≈ 45 s on 2 cores
def test_quick_group_ratios_match_the_seconds(records: dict[str, bench.BenchRecord]) -> None:
    every, paper = cb.PAPER["every"], cb.PAPER["members"] * cb.PAPER["steps"]
    for m, case in itertools.product(cb.sizes(quick=True).members, ("pcdm", "lcdm")):
        value = {k: records[f"coupled/{case}/m{m}/{k}"].value for k in METRICS}
        none = {k: records[f"coupled/none/m{m}/{k}"].value for k in BASELINE_METRICS}
        floor = records[f"coupled/none/m{m}/floor_ratio"].config
        assert none["floor_ratio"] == pytest.approx(
            none["step_seconds"] / floor["floor_step_seconds"], rel=1e-12
        )
        # the papers' no-closure run: sampling steps do nothing, reuse steps draw n² normals
        n = cb.sizes(quick=True).n
        assert floor["cost_per_member"] == {
            "sample": {"forward": 0, "inverse": 0, "normals": 0},
            "reuse": {"forward": 0, "inverse": 0, "normals": n * n},
        }
        config = records[f"coupled/{case}/m{m}/network_ratio"].config
        assert value["no_closure_ratio"] == pytest.approx(
            value["step_seconds"] / none["step_seconds"], rel=1e-12
        )
        assert value["network_ratio"] == pytest.approx(
            every * value["step_seconds"] / value["network_seconds"], rel=1e-12
        )
        network = config["encode_seconds"] + config["nfe"] * config["score_seconds"]
        network += config.get("decode_seconds", 0.0)
        assert value["network_seconds"] == pytest.approx(network, rel=1e-12)
        for metrics in (value, none):
            assert metrics["member_step_seconds"] * m == pytest.approx(metrics["step_seconds"])
            assert metrics["paper_run_seconds"] == pytest.approx(
                metrics["member_step_seconds"] * paper
            )
        assert config["no_closure_step_seconds"] == none["step_seconds"]
        paper_gpu = {"pcdm": 904, "lcdm": 325}[case]
        assert (
            records[f"coupled/{case}/m{m}/paper_run_seconds"].config["paper_gpu_seconds"]
            == paper_gpu
        )
        assert records[f"coupled/none/m{m}/paper_run_seconds"].config["paper_gpu_seconds"] == 1.8


class ScaledOmega:
    """A cheap stand-in closure model: 1e-3 · ω (timing plumbing only)."""

    kind = "scaled"
    params = None

    def closure(self, params, key, omega, context):
        return 1e-3 * omega


def scaled_case(sz: cb.Sizes, key: jax.Array, configs: bench.Configs) -> cb.CoupledCase:
    """A second case as a factory, the way a latent model is added to `CASES`."""
    fn = cb.chained(lambda x: 1e-3 * x, 3)

    def network(members: int) -> cb.NetworkCalls:
        return cb.NetworkCalls({"scale": (3, fn, (jnp.ones((members, sz.n, sz.n)),))})

    return cb.CoupledCase("scaled", ScaledOmega(), network, {"nfe": 3})


def test_further_cases_are_timed_with_their_own_network_cost() -> None:
    cases: list[Callable] = [scaled_case]
    out = {r.name: r for r in cb.coupled_benchmarks(True, {}, cases=cases)}
    m = cb.sizes(quick=True).members[0]
    assert f"coupled/pcdm/m{m}/step_seconds" not in out
    ratio = out[f"coupled/scaled/m{m}/network_ratio"]
    assert ratio.config["scale_calls"] == 3 and ratio.config["nfe"] == 3
    assert ratio.config["network_seconds"] == pytest.approx(3 * ratio.config["scale_seconds"])
    assert out[f"coupled/none/m{m}/step_seconds"].value > 0
    assert isinstance(ScaledOmega(), coupled.ClosureSource)
    with pytest.raises(ValueError, match="distinct"):
        cb.coupled_benchmarks(True, {}, cases=[scaled_case, scaled_case])
    with pytest.raises(ValueError, match="needs the study config 'paper_b'"):
        cb.coupled_benchmarks(True, {})  # the default cases build paper B's models


def test_fastest_interleaved_compiles_first_then_alternates() -> None:
    calls: list[str] = []

    def sleeper(label: str, seconds: float) -> Callable[[], None]:
        def fn() -> None:
            calls.append(label)
            time.sleep(seconds)

        return fn

    best = cb.fastest_interleaved({"a": sleeper("a", 0.01), "b": sleeper("b", 0.03)}, 3)
    assert calls == ["a", "b"] * 4
    assert 0.01 <= best["a"] < best["b"] and best["b"] >= 0.03
    with pytest.raises(ValueError, match="repeats"):
        cb.fastest_interleaved({"a": sleeper("a", 0.0)}, 0)


def test_chained_feeds_each_evaluation_the_previous_output() -> None:
    fn = cb.chained(lambda x, a: jnp.sin(x) + a, 4)
    x, a = jnp.linspace(-1.0, 1.0, 6), jnp.float32(0.5)
    expected = x
    for _ in range(4):
        expected = expected + 1e-3 * (jnp.sin(expected) + a)
    np.testing.assert_allclose(fn(x, a), expected, rtol=1e-6)
