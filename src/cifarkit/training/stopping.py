"""Ctrl-C and SIGTERM during training: turned into a flag the loop checks between steps, so it can checkpoint
before it stops (trainer.py), and the exception that then ends the run (run.py turns it into a message)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint has been written."""


def interrupted_by(stop: dict[str, int]) -> Interrupted:
    """The exception that ends a run stopped by the signal in `stop` (another rank's, SIGTERM, where none here)."""
    return Interrupted(signal.Signals(stop["signal"] or signal.SIGTERM).name)


@contextlib.contextmanager
def stop_requests() -> Iterator[dict[str, int]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps (so it can checkpoint first)."""
    flag = {"signal": 0}

    def handler(signum, _frame):
        flag["signal"] = signum

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals stay with the caller
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
