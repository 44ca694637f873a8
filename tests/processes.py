"""Python subprocesses with fake CPU devices (``XLA_FLAGS`` must be set before JAX is imported,
so these tests cannot run in the pytest process): `run_python` for one process, `two_processes`
for a two-process ``jax.distributed`` run (tests/test_parallel.py,
tests/simulation/test_coupled_distributed.py, tests/training/test_trainer.py), and
`background_python` for a second process running beside the test (e.g. holding a lock)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fake_devices_env(devices: int) -> dict[str, str]:
    """This process's environment with ``devices`` fake CPU devices and the repository on the
    Python path."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_python(code: str, devices: int, *args: str, timeout: float = 120) -> str:
    """Runs `code` with `devices` fake CPU devices; returns stdout, failing on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=fake_devices_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _spawn(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen:
    """``python -c *args`` in the repository root with pipes for stdout/stderr, no stdin."""
    return subprocess.Popen(
        [sys.executable, "-c", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )


@contextlib.contextmanager
def two_processes(
    code: str,
    extra: Callable[[int], Sequence[str]] = lambda pid: (),
    timeout: float = 120,
    devices: int = 2,
) -> Iterator[list[subprocess.Popen]]:
    """Run processes 0 and 1 (``python -c code pid port *extra(pid)``) around the ``with`` body;
    on leaving it, wait up to ``timeout`` s and assert each printed ``OK <pid>``. An exception in
    the body kills the workers and propagates."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    env = fake_devices_env(devices)
    procs = [_spawn([code, str(pid), port, *extra(pid)], env) for pid in (0, 1)]
    try:
        yield procs
        outputs = [proc.communicate(timeout=timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for pid, (proc, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0 and f"OK {pid}" in out, f"process {pid}:\n{out}\n{err[-4000:]}"


@contextlib.contextmanager
def background_python(code: str, *args: str, ready: str = "READY") -> Iterator[subprocess.Popen]:
    """Runs ``python -c code *args`` (repository on the path, CPU only) around the ``with``
    body, once it has printed the line `ready` (e.g. after taking a lock); kills it on leaving
    (if still running)."""
    proc = _spawn([textwrap.dedent(code), *args], fake_devices_env(1))
    try:
        line = proc.stdout.readline().strip()
        if line != ready:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"background process printed {line!r}, not {ready!r}:\n{err}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


HOLD_LOCK = """
import sys, time
from closurejax import locking
with locking.hold(sys.argv[1], sys.argv[2]):
    print("READY", flush=True)
    time.sleep(600)
"""


def holding_lock(folder: Path, stage: str) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """`background_python` holding `closurejax.locking.hold(folder, stage)` (another process
    generating or training there)."""
    return background_python(HOLD_LOCK, str(folder), stage)
