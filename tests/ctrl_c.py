"""A Ctrl-C that Python swallows, for the tests of `closurejax.interrupts` and the loops that use
it: SIGINT delivered inside a `__del__`, where Python prints "Exception ignored" and carries on
(as it did inside jax's garbage-collector callback when a CI run lost its Ctrl-C)."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator


class _SwallowsCtrlC:
    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


def lose_a_ctrl_c() -> None:
    """Sends this process SIGINT from inside a `__del__`: the KeyboardInterrupt dies there."""
    _SwallowsCtrlC()


@contextlib.contextmanager
def python_sigint_handler() -> Iterator[None]:
    """Python's own SIGINT handler inside the block (a test run started with `&` has SIGINT
    ignored), the previous one restored after; the swallowed exceptions' reports silenced."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        yield
    finally:
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, previous)
