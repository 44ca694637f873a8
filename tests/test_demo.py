"""`make demo` end to end (experiments/demo.py) on a shrunken copy of the demo config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TINY = """
from experiments.configs import demo


def get_config():
    config = demo.get_config()
    config.unlock()
    config.data.update(dict(fine_size=32, coarse_size=32, num_trajectories=3, num_test=1,
                            t_burn_in=0.01, t_end=0.05, snapshot_interval=0.01,
                            trajectories_per_chunk=3, zero_shot_sizes=()))
    config.model.update(dict(width=8, modes=4, depth=2, embed_dim=16))
    config.training.update(dict(batch_size=4, num_epochs=2, checkpoint_every=2, log_every=1))
    config.simulation.update(dict(t_start=0.01, t_end=0.05, every=2, ensemble_size=2,
                                  save_interval=0.01, figure_times=(0.03, 0.05)))
    config.lock()
    return config
"""


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    config = tmp_path / "tiny_demo.py"
    config.write_text(textwrap.dedent(TINY))
    workdir = tmp_path / "demo"
    cmd = [
        sys.executable,
        str(ROOT / "experiments" / "demo.py"),
        f"--config={config}",
        f"--workdir={workdir}",
        "--no_progress",
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "online relative vorticity error" in first.stdout
    assert "the sampled closure" in first.stdout
    results = json.loads((workdir / "simulation" / "results.json").read_text())
    assert set(results["sources"]) == {"none", "diffusion"}
    for name in ("fields.png", "error.png", "spectra.png", "rollout.gif"):
        assert (workdir / "simulation" / "figures" / name).exists()
    assert (workdir / "figures" / "test_snapshot.png").exists()
    # a second run reuses every stage and prints the same table
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    table = [line for line in first.stdout.splitlines() if line.startswith(("none", "diffusion"))]
    again = [line for line in second.stdout.splitlines() if line.startswith(("none", "diffusion"))]
    assert [line.split()[:-1] for line in table] == [line.split()[:-1] for line in again]


def test_demo_reports_bad_config_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        TINY.replace("t_end=0.05, every=2", "t_end=0.01, every=2").replace(
            "figure_times=(0.03, 0.05)", "figure_times=()"
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "demo.py"),
            f"--config={bad}",
            f"--workdir={tmp_path / 'w'}",
            "--no_progress",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert out.returncode != 0
    assert "demo: simulation.t_end=0.01 is invalid" in out.stderr
    assert not (tmp_path / "w").exists()  # refused before anything was written
