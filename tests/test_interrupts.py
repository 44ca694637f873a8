"""A Ctrl-C that Python swallows (raised inside a `__del__`, as in a garbage-collector callback)
is still raised by `interrupts.check()` and at the end of `interrupts.catching()`."""

from __future__ import annotations

import signal
import sys

import pytest

from closurejax import interrupts
from tests.ctrl_c import lose_a_ctrl_c, python_sigint_handler


@pytest.fixture(autouse=True)
def sigint_handler():
    with python_sigint_handler():
        yield


def test_without_the_guard_python_loses_the_ctrl_c() -> None:
    lose_a_ctrl_c()  # no KeyboardInterrupt: the failure the module exists for
    assert not interrupts.pending()


def test_check_raises_a_lost_ctrl_c_once() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts.catching():
        interrupts.check()  # nothing received: nothing raised
        lose_a_ctrl_c()
        assert interrupts.pending()
        try:
            interrupts.check()
        except KeyboardInterrupt:
            assert not interrupts.pending()
            interrupts.check()  # raised once only
            raise
        pytest.fail("check() did not raise the lost Ctrl-C")


def test_a_block_that_ends_after_a_lost_ctrl_c_raises_at_its_end() -> None:
    ended = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts.catching():
            lose_a_ctrl_c()
            ended = True
    assert ended and not interrupts.pending()


def test_a_delivered_ctrl_c_propagates_and_is_not_raised_again() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts.catching():
        signal.raise_signal(signal.SIGINT)
    assert not interrupts.pending()
    with interrupts.catching():  # a fresh block starts clean
        interrupts.check()


def test_handlers_are_restored_and_foreign_handlers_left_alone() -> None:
    with interrupts.catching():
        inner = signal.getsignal(signal.SIGINT)
        assert inner is not signal.default_int_handler
        with interrupts.catching():  # nested: the outer block's handler stays
            assert signal.getsignal(signal.SIGINT) is inner
        assert signal.getsignal(signal.SIGINT) is inner
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    with interrupts.catching():  # someone else's handler (a shell's): not replaced
        signal.raise_signal(signal.SIGINT)
    assert received == [signal.SIGINT] and not interrupts.pending()


def test_checked_progress_stops_at_the_next_call_after_a_lost_ctrl_c() -> None:
    seen: list[int] = []
    progress = interrupts.checked(seen.append)
    with pytest.raises(KeyboardInterrupt), interrupts.catching():
        progress(3)
        lose_a_ctrl_c()
        progress(4)
    assert seen == [3]


class FailsOnDelete:
    def __del__(self) -> None:
        raise ValueError("another unraisable error")


def test_the_lost_ctrl_c_is_not_reported_and_other_unraisable_errors_are() -> None:
    reported: list[type] = []
    sys.unraisablehook = lambda unraisable: reported.append(type(unraisable.exc_value))
    with pytest.raises(KeyboardInterrupt), interrupts.catching():
        lose_a_ctrl_c()  # no "Exception ignored … KeyboardInterrupt" on stderr
        FailsOnDelete()
    assert reported == [ValueError]
    lose_a_ctrl_c()  # outside the block: Python's report as before
    assert reported == [ValueError, KeyboardInterrupt]
