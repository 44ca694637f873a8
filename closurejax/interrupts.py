"""A Ctrl-C that is never lost: long loops stop at their next step even when Python swallowed it.

Python delivers SIGINT by raising `KeyboardInterrupt` in whatever Python code the main thread
runs next. When that is a garbage-collector callback, a weakref callback or a `__del__` (jax
registers such callbacks for its buffers), the exception is *unraisable*: Python prints
"Exception ignored in: …" and carries on, and a training run that should have stopped trains on
(seen on a CI machine: the launcher ran past its test's 120 s).

`catching()` installs, for its block, a SIGINT handler that records the signal before raising
`KeyboardInterrupt` as usual; `check()`, called by the library's long loops at every step, raises
it again if it was recorded but lost. A block that ends without an exception after a lost Ctrl-C
raises it at its end, so a launcher never exits 0 after the user pressed Ctrl-C. The block also
keeps Python from printing the lost one ("Exception ignored … Traceback … KeyboardInterrupt"):
the user sees the one line the launcher prints when the loop stops; every other unraisable
exception is reported as before.

Use::

    with interrupts.catching():
        for step in range(n):
            interrupts.check()
            ...
        rollout(..., progress=interrupts.checked(bar.update))
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["catching", "check", "checked", "pending"]

_received: list[int] = []  # SIGINTs recorded by the handler and not yet raised by `check`


def _handler(signum: int, frame: FrameType | None) -> None:
    """Records the signal, then raises as Python's default SIGINT handler does."""
    _received.append(signum)
    raise KeyboardInterrupt


def _quiet_lost_interrupts(previous: object) -> object:
    """An unraisable-exception hook that drops the KeyboardInterrupts `_handler` raised (recorded:
    `check` raises them again) and passes everything else to `previous`."""

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received:
            return
        previous(unraisable)  # type: ignore[operator]

    return hook


def pending() -> bool:
    """Whether a Ctrl-C was received inside `catching()` and not yet raised by `check()`."""
    return bool(_received)


def check() -> None:
    """Raises `KeyboardInterrupt` if a Ctrl-C was received since the block began (or since the
    last `check` that raised); otherwise does nothing (a list read: cheap at every step)."""
    if _received:
        _received.clear()
        raise KeyboardInterrupt


def checked(progress: Callable[[int], object]) -> Callable[[int], None]:
    """`progress` (a rollout's host-side progress callback, called between compiled blocks) that
    first calls `check()`: a lost Ctrl-C stops the rollout at its next block."""

    def call(steps: int) -> None:
        check()
        progress(steps)

    return call


@contextlib.contextmanager
def catching() -> Iterator[None]:
    """Records every Ctrl-C inside the block, so that `check()` can raise one that was lost.

    Installs the recording handler only where Python's own SIGINT handler is in place and only
    in the main thread (the only thread that may set handlers); nested blocks, another installed
    handler (e.g. an interactive shell's), or SIGINT ignored leave everything as it is. The
    previous handler is restored at the end. A Ctrl-C recorded and never raised makes a block
    that ends without an exception raise `KeyboardInterrupt` at its end.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _received.clear()
    hook = sys.unraisablehook
    sys.unraisablehook = _quiet_lost_interrupts(hook)
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    except BaseException:
        _received.clear()
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = hook
    check()
