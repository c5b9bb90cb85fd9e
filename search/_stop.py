"""Stopping a long command where it is safe: between trials or runs, and at each training step."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["StopRequest"]


class StopRequest:
    """Ctrl-C and SIGTERM, honoured where stopping is safe.

    The first signal only sets a flag. ``check`` raises KeyboardInterrupt once it is set; the
    worker loop calls it between trials and the evaluation at every training step (Optuna then
    records the running trial FAIL). Raising from the handler itself could cut Optuna off while
    it writes a trial (it then crashes on its half-set state) or land in a finalizer, where
    Python prints and drops it. A second signal does raise at once, for an evaluation stuck
    where it never checks.
    """

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def catching(self, *signals: signal.Signals) -> Iterator[None]:
        """Handle ``signals`` inside the block (the previous handlers come back after it).
        Only the main thread can set handlers; elsewhere the block runs with the default ones."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in signals}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt
