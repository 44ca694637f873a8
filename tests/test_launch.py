"""The launchers of experiments/ (experiments/launch.py): what a user gets wrong on the command
line ends in one line ``<launcher>: …`` naming the flag or field, the value and what is allowed,
exit status 1, no traceback and nothing written; Ctrl-C ends in one line saying where the work
stopped and that the same command resumes, exit status 130."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from closurejax.data import generate
from tests.processes import ROOT, fake_devices_env
from tests.tiny import tiny_online

DEMO = ROOT / "experiments" / "configs" / "demo.py"
CONFIG_LAUNCHERS = ("generate_data", "train", "evaluate_offline", "simulate", "reproduce", "demo")
ALLOWED_CONFIG = "allowed: a Python config file defining get_config()"


def launch(tmp_path: Path, launcher: str, *args: str) -> subprocess.CompletedProcess:
    """``experiments/<launcher>.py *args`` in a subprocess (CPU, cwd `tmp_path`)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / f"{launcher}.py"), *args],
        capture_output=True,
        text=True,
        env=fake_devices_env(1),
        cwd=tmp_path,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def refusal(proc: subprocess.CompletedProcess, launcher: str) -> str:
    """The one line a refused launcher printed (asserting exit 1, one stderr line, no
    traceback), without the ``<launcher>: `` prefix."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith(f"{launcher}: "), lines
    return lines[0][len(launcher) + 2 :]


def config_case(tmp_path: Path, case: str) -> tuple[list[str], str]:
    """The arguments of a bad-config case and the message expected for it."""
    yaml = tmp_path / "study.yaml"
    yaml.write_text("model:\n  width: 3\n")
    cases = {
        "unknown_field": (
            [f"--config={DEMO}", "--config.model.widht=3"],
            "--config.model.widht=3: config.model has no field 'widht' (did you mean 'width'?); "
            "its fields: batch_chunk, conditions, depth, embed_dim, embed_scale, kind, modes, "
            "spectral_method, width",
        ),
        "unknown_section": (
            [f"--config={DEMO}", "--config.optim.lr=3"],
            "--config.optim.lr=3: config has no field 'optim'; its fields: data, diffusion, ",
        ),
        "empty": (["--config="], f"--config is empty; {ALLOWED_CONFIG}"),
        "missing": (
            [f"--config={tmp_path / 'nope.py'}"],
            f"--config={tmp_path / 'nope.py'}: no such file; {ALLOWED_CONFIG}",
        ),
        "yaml": (
            [f"--config={yaml}"],
            f"--config={yaml} is not a Python config file (SyntaxError: invalid syntax "
            f"(study.yaml, line 1)); {ALLOWED_CONFIG}",
        ),
        "kind": (
            [f"--config={DEMO}", "--config.model.kind=foo"],
            "model.kind='foo' is invalid; allowed: ('score', 'regression', 'latent')",
        ),
    }
    return cases[case]


# Every case once in the default suite (train); the same cases through the other launchers (one
# subprocess of ≈ 4 s each) in the slow set, which CI also runs.
SWEEP = pytest.mark.slow
CASES = [
    ("train", case) for case in ("unknown_field", "unknown_section", "empty", "missing", "yaml")
]
CASES += [("train", "kind")]
CASES += [pytest.param(launcher, "yaml", marks=SWEEP) for launcher in CONFIG_LAUNCHERS[2:]]
CASES += [pytest.param("generate_data", "yaml", marks=SWEEP)]
CASES += [
    pytest.param(launcher, "kind", marks=SWEEP)
    for launcher in CONFIG_LAUNCHERS
    if launcher != "train"
]
CASES += [pytest.param("demo", "unknown_field", marks=SWEEP)]  # demo's --config has a default


@pytest.mark.parametrize(("launcher", "case"), CASES)
def test_a_bad_config_is_refused_in_one_line(tmp_path: Path, launcher: str, case: str) -> None:
    args, expected = config_case(tmp_path, case)
    if launcher == "demo" and case == "unknown_field":
        args = args[1:]
    workdir = tmp_path / "w"
    line = refusal(launch(tmp_path, launcher, *args, f"--workdir={workdir}"), launcher)
    assert line.startswith(expected), line
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("launcher", "case"),
    [
        ("generate_data", "file"),
        ("train", "not_writable"),
        *[
            pytest.param(launcher, case, marks=SWEEP)
            for launcher in ("generate_data", "train")
            for case in ("file", "under_file", "not_writable", "empty")
            if (launcher, case) not in {("generate_data", "file"), ("train", "not_writable")}
        ],
    ],
)
def test_a_workdir_that_cannot_be_a_folder_is_refused(
    tmp_path: Path, launcher: str, case: str
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    workdir, expected = {
        "file": (a_file, "is a file; allowed: a folder (created if absent)"),
        "under_file": (
            a_file / "w",
            f"lies under the file {a_file}; allowed: a folder (created if absent)",
        ),
        # /proc refuses new files even to root (a chmod'ed folder would not stop root)
        "not_writable": (Path("/proc/closurejax_w"), "/proc is not writable ("),
        "empty": ("", "is empty; allowed: a folder (created if absent)"),
    }[case]
    proc = launch(tmp_path, launcher, f"--config={DEMO}", f"--workdir={workdir}", "--no_progress")
    line = refusal(proc, launcher)
    assert line.startswith(f"flag --workdir={workdir}: {expected}"), line
    assert a_file.read_text() == "not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_flag_errors_are_one_line_too(tmp_path: Path) -> None:
    line = refusal(launch(tmp_path, "train", f"--config={DEMO}"), "train")
    assert line == "flag --workdir=None: Flag --workdir must have a value other than None."
    line = refusal(launch(tmp_path, "simulate", "--bogus"), "simulate")
    assert line == "Unknown command line flag 'bogus'"


def test_evaluation_without_a_trained_model_is_refused_leaving_no_folder(tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    generate.generate(tiny_online(), workdir, show_progress=False, log=lambda _: None)
    args = [f"--config={tiny_config_file(tmp_path)}", f"--workdir={workdir}"]
    line = refusal(launch(tmp_path, "evaluate_offline", *args), "evaluate_offline")
    assert line == (
        f"no checkpoint of a trained 'score' model in {workdir / 'score'}; run "
        "experiments/train.py first"
    )
    assert sorted(p.name for p in workdir.iterdir()) == ["dataset"]
    line = refusal(
        launch(tmp_path, "evaluate_offline", *args, "--denoiser_times=1e-3"), "evaluate_offline"
    )
    assert line.startswith(f"no checkpoint of a trained 'score' model in {workdir / 'score'}")
    line = refusal(
        launch(tmp_path, "evaluate_offline", *args, "--denoiser_times=1e-3,x"), "evaluate_offline"
    )
    assert line == "--denoiser_times=1e-3,x: expected numbers"
    assert sorted(p.name for p in workdir.iterdir()) == ["dataset"]


def test_simulate_with_an_empty_checkpoints_folder_is_refused(tmp_path: Path) -> None:
    checkpoints = tmp_path / "w" / "score" / "checkpoints"
    checkpoints.mkdir(parents=True)
    proc = launch(
        tmp_path,
        "simulate",
        f"--config={DEMO}",
        f"--workdir={tmp_path / 'w'}",
        "--sources=diffusion",
        "--no_progress",
    )
    assert refusal(proc, "simulate") == f"{checkpoints} holds no complete checkpoint"
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["score"]


TINY_CONFIG = """
import ml_collections
from tests.tiny import tiny_online

def get_config():
    return ml_collections.ConfigDict(tiny_online())
"""


def tiny_config_file(tmp_path: Path) -> Path:
    """A config file of the tiny online study (tests/tiny.py)."""
    path = tmp_path / "tiny.py"
    path.write_text(TINY_CONFIG)
    return path


def interrupt(
    tmp_path: Path, launcher: str, args: list[str], started: Callable[[], bool]
) -> tuple[int, str, str]:
    """Runs ``experiments/<launcher>.py *args``, sends it SIGINT (Ctrl-C) once `started()` is
    true (polled), and returns (exit status, stdout, stderr)."""
    # Ctrl-C as at a terminal: a test run started in the background (`cmd &`) has SIGINT ignored,
    # which its children would inherit (and Python then leaves ignored); a caught signal is
    # reset to the default at exec, so the launcher starts with Python's KeyboardInterrupt
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "experiments" / f"{launcher}.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**fake_devices_env(1), "PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
        )
    finally:
        signal.signal(signal.SIGINT, outer)
    try:
        deadline = time.monotonic() + 240
        while not started():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the launcher did not start its work in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def chunks_written(dataset: Path) -> int:
    """The chunks a dataset's manifest records as written (0 before it exists)."""
    try:
        return len(json.loads((dataset / "manifest.json").read_text())["chunks"])
    except (OSError, ValueError, KeyError):
        return 0


MANY_CHUNKS = ["--config.data.num_trajectories=12", "--config.data.trajectories_per_chunk=1"]


@pytest.mark.slow  # ≈ 30–50 s each on 2 cores: `make test-slow` (and CI) runs it
@pytest.mark.parametrize("launcher", ["generate_data", "reproduce"])
def test_ctrl_c_during_generation_says_where_it_stopped_and_the_same_command_resumes(
    tmp_path: Path, launcher: str
) -> None:
    workdir = tmp_path / "w"
    args = [f"--config={tiny_config_file(tmp_path)}", *MANY_CHUNKS, f"--workdir={workdir}"]
    args += ["--no_progress"] + (["--stages=data"] if launcher == "reproduce" else [])
    code, out, err = interrupt(
        tmp_path, launcher, args, lambda: chunks_written(workdir / "dataset") >= 1
    )
    assert code == 130 and "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"{launcher}: \[dataset\] stopped in chunk (\d+) of 12; (\d+) of 12 chunks written and "
        rf"kept in {re.escape(str(workdir / 'dataset'))}; run the same command to resume",
        line,
    )
    assert match, line
    written = int(match[2])
    assert 1 <= written == chunks_written(workdir / "dataset") and int(match[1]) == written + 1
    if launcher == "generate_data":  # the same command resumes: only the chunks left run
        proc = launch(tmp_path, launcher, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"[dataset] {12 - written} chunk(s) to run" in proc.stdout


@pytest.mark.slow  # ≈ 30–50 s each on 2 cores: `make test-slow` (and CI) runs it
def test_ctrl_c_during_training_says_the_step_and_the_checkpoint_to_resume_from(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "w"
    generate.generate(tiny_online(), workdir, show_progress=False, log=lambda _: None)
    metrics = workdir / "score" / "metrics.jsonl"

    def stepping() -> bool:
        return metrics.exists() and len(metrics.read_text().splitlines()) >= 3

    args = [f"--config={tiny_config_file(tmp_path)}", "--config.training.num_epochs=5000"]
    code, out, err = interrupt(
        tmp_path, "train", [*args, f"--workdir={workdir}", "--no_progress"], stepping
    )
    assert code == 130 and "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    run = workdir / "score"
    match = re.fullmatch(
        rf"train: training {re.escape(str(run))} stopped at step (\d+) of 10000; latest "
        rf"checkpoint: step (\d+) in {re.escape(str(run / 'checkpoints'))}; run the same "
        "command to resume",
        line,
    )
    assert match, line
    step, checkpoint = int(match[1]), int(match[2])
    assert 2 <= checkpoint <= step < 10000 and checkpoint % 2 == 0  # checkpoint_every=2
    assert (run / "checkpoints" / str(checkpoint)).is_dir()


ABSL_INFO = re.compile(r"^I\d{4} ", re.MULTILINE)  # absl's INFO prefix (orbax logs at INFO)


@pytest.mark.slow  # ≈ 30–50 s each on 2 cores: `make test-slow` (and CI) runs it
def test_train_and_evaluate_offline_show_progress_not_library_info_lines(tmp_path: Path) -> None:
    """train.py and evaluate_offline.py keep their output to progress, warnings and results:
    no INFO lines of orbax (a checkpoint save or load logs dozens); evaluate_offline.py, which
    runs for minutes on a real study, shows a progress bar over its evaluations."""
    workdir = tmp_path / "w"
    generate.generate(tiny_online(), workdir, show_progress=False, log=lambda _: None)
    args = [f"--config={tiny_config_file(tmp_path)}", f"--workdir={workdir}"]
    trained = launch(tmp_path, "train", *args)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert not ABSL_INFO.search(trained.stdout + trained.stderr), trained.stderr[-3000:]
    assert "step" in trained.stderr  # the training bar
    evaluated = launch(tmp_path, "evaluate_offline", *args)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert not ABSL_INFO.search(evaluated.stdout + evaluated.stderr), evaluated.stderr[-3000:]
    assert "offline score n32: 100%" in evaluated.stderr and "1/1" in evaluated.stderr
    assert "score/n32" in evaluated.stdout and f"written: {workdir / 'offline'}" in evaluated.stdout
    quiet = launch(tmp_path, "evaluate_offline", *args, "--no_progress")
    assert quiet.returncode == 0 and "offline score" not in quiet.stderr, quiet.stderr[-3000:]
    denoiser = launch(tmp_path, "evaluate_offline", *args, "--denoiser_times=1e-3,0.1")
    assert denoiser.returncode == 0, denoiser.stderr[-3000:]
    stored = json.loads((workdir / "offline" / "denoiser.json").read_text())
    assert stored["t"] == [1e-3, 0.1] and len(stored["rel_error"]) == 2
    assert len(stored["params_sha256"]) == 64
    rows = [line.split() for line in denoiser.stdout.splitlines() if line[:1].isdigit()]
    assert [float(r[2]) for r in rows] == pytest.approx(stored["rel_error"], abs=1e-4)
