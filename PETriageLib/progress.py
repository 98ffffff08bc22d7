"""The progress and cancel protocol every long step shares (reading, lungs, stages, Grad-CAM,
screening), so that no step has to import another to report or stop.

``progress(done, total, message)`` is called as work advances; ``cancel`` is anything
``is_cancelled`` understands, checked between batches.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from PETriageLib.errors import PETriageError

Progress = Callable[[int, int, str], None]


class Cancelled(PETriageError):
    """The user cancelled a run; nothing partial is returned."""


def is_cancelled(cancel: Any) -> bool:
    """Accept a callable, a threading.Event-like object, or a plain truthy value."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    return bool(cancel)


def raise_if_cancelled(cancel: Any, what: str, done: int, total: int, unit: str = "slices") -> None:
    """Raise ``Cancelled("<what> cancelled after <done> of <total> <unit>")`` when ``cancel`` is set."""
    if is_cancelled(cancel):
        raise Cancelled(f"{what} cancelled after {done} of {total} {unit}")


def report_progress(progress: Optional[Progress], done: int, total: int, message: str) -> None:
    """Call ``progress`` when there is one."""
    if progress is not None:
        progress(done, total, message)
