"""Run one function on a worker thread while the GUI polls its progress, outcome and error.

The function gets ``(report, cancel)``: ``report(done, total, message)`` to publish progress and a
``threading.Event`` that is set when the user presses Cancel. It must not touch MRML: the GUI
thread publishes nodes once ``done`` is True.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class BackgroundWork:
    def __init__(self, function: Callable[[Callable[[int, int, str], None], threading.Event], Any],
                 label: str) -> None:
        self.label = label
        self.cancel = threading.Event()
        self.progress: tuple[int, int, str] = (0, 0, label)
        self.error: BaseException | None = None
        self.value: Any = None
        self.done = False
        self._thread = threading.Thread(target=self._run, args=(function,), daemon=True, name=f"PETriage {label}")

    def _run(self, function: Callable) -> None:
        try:
            self.value = function(self.report, self.cancel)
        except Exception as exc:  # handed to the GUI, which shows it
            if type(exc).__name__ != "Cancelled":
                log.exception("%s failed", self.label)
            self.error = exc
        finally:
            self.done = True

    @property
    def cancelled(self) -> bool:
        return type(self.error).__name__ == "Cancelled"

    def report(self, done: int, total: int, message: str) -> None:
        self.progress = (int(done), int(total), message)

    def start(self) -> "BackgroundWork":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the end (for scripts and tests); True when finished."""
        self._thread.join(timeout)
        return self.done
