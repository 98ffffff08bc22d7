"""Repeated timing with warm-up: median and spread of wall time, plus CPU time.

CPU time (this process, all threads) is reported next to wall time because the machine may
be shared: wall time then includes waiting for a core, CPU time does not.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    cpu_median_s: float  # process CPU seconds per call (all threads)
    load_avg: float  # 1-minute load average when the timing ended

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_call(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1,
              min_time_s: float = 0.0) -> Timing:
    """Call ``fn`` ``warmup`` times, then at least ``repeats`` times and ``min_time_s`` seconds."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    start = time.perf_counter()
    while len(walls) < max(1, repeats) or time.perf_counter() - start < min_time_s:
        c, t = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return Timing(median_s=statistics.median(walls), min_s=min(walls), max_s=max(walls), repeats=len(walls),
                  cpu_median_s=statistics.median(cpus), load_avg=load_average())


def load_average() -> float:
    """1-minute load average (0.0 where the OS does not report one)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return 0.0
