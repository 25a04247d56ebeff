"""Running a config's own code, as mmengine does, with warnings silenced and a time limit."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import warnings
from typing import Any

EXEC_TIMEOUT_S = float(os.environ.get("FREEZEFIX_EXEC_TIMEOUT", "20"))


class ExecTimeout(BaseException):
    """Raised into a config's code by the timer; a BaseException so the config cannot catch it."""


def execute(code: Any, scope: dict) -> None:
    """``exec`` config code in ``scope``; ExecTimeout (with the message to show) past EXEC_TIMEOUT_S."""
    limit = EXEC_TIMEOUT_S
    with warnings.catch_warnings(), _time_limit(limit):
        warnings.simplefilter("ignore")
        exec(code, scope, scope)  # noqa: S102 - config code, as mmengine runs it


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Stop a config that runs too long (main thread, POSIX: a real-time interval timer)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise ExecTimeout(f"did not finish executing within {seconds:g} s (an endless loop?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
