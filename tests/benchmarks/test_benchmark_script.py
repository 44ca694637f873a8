"""End to end: `experiments/benchmark.py --quick` writes the solver and score records."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from closurejax.benchmarks import records as bench
from tests.benchmarks.study_configs import study_configs

REPO = Path(__file__).resolve().parents[2]


def run_benchmark(
    tmp_path: Path, output: Path, only: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`experiments/benchmark.py --quick --only=<only> --output=<output>` in a subprocess."""
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "benchmark.py"),
            "--quick",
            f"--only={only}",
            f"--output={output}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env=env,
    )


@pytest.mark.slow  # the quick solver group in a subprocess: ≈ 15 s on 2 cores
def test_benchmark_script_quick_solver(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    other = bench.record("other/kept", 1.0, "s", config={})
    stale = bench.record("solver/stale/steps_per_s", 1.0, "steps/s", config={})
    bench.write_records(output, [other, stale], replace_prefix=None)

    proc = run_benchmark(tmp_path, output, "solver")
    assert proc.returncode == 0, proc.stderr[-4000:]

    records = {r["name"]: r for r in json.loads(output.read_text())}
    expected = {
        f"solver/{stepper}/n{n}/b{b}/{metric}"
        for stepper in ("semi_implicit", "cn_rk4")
        for n in (16, 32)
        for b in (1, 2)
        for metric in ("steps_per_s", "floor_ratio")
    }
    assert set(records) == expected | {"other/kept"}  # stale solver row replaced, other kept
    for name in expected:
        r = records[name]
        assert name in proc.stdout  # the table
        assert r["value"] is not None and math.isfinite(r["value"]) and r["value"] > 0
        assert r["target"] is None and r["meets_target"] is None  # targets only at n = 256
        assert r["unit"] == ("steps/s" if name.endswith("steps_per_s") else "ratio")
        config = r["config"]
        assert f"solver/{config['stepper']}/n{config['n']}/b{config['batch']}/" in name
        assert config["K"] == 2 and config["dtype"] == "float32"
        assert r["device"] == bench.device_description()


@pytest.mark.slow  # the quick score group in a subprocess: ≈ 40 s on 2 cores
def test_benchmark_script_quick_score_group(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    proc = run_benchmark(tmp_path, output, "score")
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = {r["name"]: r for r in json.loads(output.read_text())}
    samplers = ("euler_maruyama", "predictor_corrector", "heun_ode", "dpm_solver")
    expected = {f"score/forward/{m}/b{b}/seconds" for m in ("dft", "fft") for b in (1, 4)}
    expected |= {f"score/sample/{s}/b4/seconds" for s in samplers}
    expected |= {"score/forward/b4/flop_ratio", "score/train_step/b8/seconds"}
    expected |= {"score/train_step/b8/no_remat_seconds"}
    assert set(records) == expected
    assert records["score/train_step/b8/seconds"]["config"]["remat_slices"] is True
    assert records["score/train_step/b8/no_remat_seconds"]["config"]["remat_slices"] is False
    ratio = records["score/forward/b4/flop_ratio"]
    assert ratio["target"] == 3.0 and ratio["meets_target"] == (ratio["value"] <= 3.0)
    assert ratio["config"]["flops"] > 0 and ratio["config"]["best_method"] in ("dft", "fft")
    assert all(math.isfinite(r["value"]) and r["value"] > 0 for r in records.values())


def test_sampler_accuracy_group_needs_a_trained_study(tmp_path: Path) -> None:
    import pytest

    from closurejax.benchmarks import samplers

    configs = study_configs(samplers.CONFIGS["samplers"])
    with pytest.raises(FileNotFoundError, match="cpu_small"):
        samplers.sampler_accuracy_benchmarks(True, configs, str(tmp_path))


def test_group_with_a_missing_prerequisite_is_skipped_and_others_kept(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    kept = bench.record("samplers/old/rel_error_mean", 0.2, "rel", config={})
    bench.write_records(output, [kept], replace_prefix=None)
    proc = run_benchmark(
        tmp_path,
        output,
        "samplers",
        env={**os.environ, "CLOSUREJAX_BENCH_STUDY": str(tmp_path / "none")},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "skipped samplers" in proc.stdout and "cpu_small" in proc.stdout
    assert [r["name"] for r in json.loads(output.read_text())] == ["samplers/old/rel_error_mean"]


def test_a_corrupt_output_file_is_refused_in_one_line_before_any_run(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    output.write_text("{not json")
    proc = run_benchmark(tmp_path, output, "solver")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert proc.stderr.strip().splitlines() == [
        f"benchmark: benchmark file {output} is not valid JSON (Expecting property name enclosed "
        "in double quotes: line 1 column 2 (char 1)); move or delete it, it was not overwritten"
    ]
    assert output.read_text() == "{not json"
    proc = run_benchmark(tmp_path, tmp_path / "new.json", "solver,nope")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "benchmark: --only: unknown groups ['nope']; allowed: "
        "['solver', 'score', 'samplers', 'latent', 'coupled']"
    ]
    assert not (tmp_path / "new.json").exists()
