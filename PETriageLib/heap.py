"""Give freed heap memory back to the operating system between the steps of a triage.

glibc keeps memory that Python, numpy and torch have freed inside its arenas; after the cascade's
batch loop that is 20-40 MB on a 600-slice series (docs/benchmarks.md), still counted in the process's RSS when the
Grad-CAM step imports its libraries and the report is written. ``malloc_trim`` returns it. Where
the C library has no ``malloc_trim`` (musl, macOS, Windows, or another malloc preloaded), nothing
happens.
"""
from __future__ import annotations

import ctypes
import sys

_TRIM = None


def release_freed_memory() -> bool:
    """Trim glibc's heap (``malloc_trim(0)``); True when memory was returned."""
    global _TRIM
    if not sys.platform.startswith("linux"):
        return False
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
            _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _TRIM = False
    return bool(_TRIM and _TRIM(0))
