"""SIGTERM (a scheduler's or a service manager's stop, `kill PID`) ends a command the way Ctrl-C
does: the running trial records itself as interrupted, every file being written is either whole
or absent, and a re-run resumes. Only the exit code tells the two apart: 130 and 143."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT
TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM reached this process; a KeyboardInterrupt, so every Ctrl-C path handles it."""


def exit_code(interrupt: BaseException) -> int:
    """143 for SIGTERM, 130 for Ctrl-C; click turns either into an Abort caused by it."""
    terminated = isinstance(interrupt, Terminated) or isinstance(interrupt.__cause__, Terminated)
    return TERMINATED_EXIT_CODE if terminated else INTERRUPTED_EXIT_CODE


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within, SIGTERM raises Terminated in the main thread (a no-op elsewhere: only the main
    thread may handle signals); the previous handler returns afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
