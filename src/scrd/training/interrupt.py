"""Stopping training cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler's kill)."""

from __future__ import annotations

import signal
import threading
from typing import Any


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint (the message says how to go on)."""


class StopRequest:
    """While active, SIGINT and SIGTERM only set ``signum``: the loop finishes its iteration, writes a
    checkpoint and stops. A second signal stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
