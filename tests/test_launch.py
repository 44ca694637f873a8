"""The launchers of experiments/ (experiments/launch.py): what a user gets wrong on the command
line ends in one line ``<launcher>: …`` naming the flag or field, the value and what is allowed,
exit status 1, no traceback and nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT, fake_devices_env

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


CASES = [("train", case) for case in ("unknown_field", "unknown_section", "empty", "missing")]
CASES += [(launcher, "yaml") for launcher in CONFIG_LAUNCHERS]
CASES += [(launcher, "kind") for launcher in CONFIG_LAUNCHERS]
CASES += [("demo", "unknown_field")]  # demo's --config has a default: overrides alone


@pytest.mark.parametrize(("launcher", "case"), CASES)
def test_a_bad_config_is_refused_in_one_line(tmp_path: Path, launcher: str, case: str) -> None:
    args, expected = config_case(tmp_path, case)
    if launcher == "demo" and case == "unknown_field":
        args = args[1:]
    workdir = tmp_path / "w"
    line = refusal(launch(tmp_path, launcher, *args, f"--workdir={workdir}"), launcher)
    assert line.startswith(expected), line
    assert not workdir.exists()


@pytest.mark.parametrize("launcher", ["generate_data", "train"])
@pytest.mark.parametrize("case", ["file", "under_file", "not_writable", "empty"])
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
