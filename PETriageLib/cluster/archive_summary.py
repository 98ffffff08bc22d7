"""What one archive screening did: outcomes counted, throughput, where the time went."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from PETriageLib.cluster.store import STATUSES, SeriesOutcome


@dataclass
class ArchiveSummary:
    total: int  # series in the source
    already_finished: int  # done or skipped by an earlier run with the same models
    workers: int  # 0: in-process
    counts: Counter = field(default_factory=Counter)  # this run's outcomes per status
    retried: int = 0  # series screened again after their worker died
    seconds: float = 0.0  # wall time of this run's screening, from the moment the models were loaded
    startup_s: float = 0.0  # workers starting and loading the models (ray.init not included)
    step_seconds: Counter = field(default_factory=Counter)  # summed over this run's series

    def add(self, outcome: SeriesOutcome) -> None:
        self.counts[outcome.status] += 1
        self.retried += outcome.attempts > 1
        self.step_seconds.update(outcome.timings)

    @property
    def screened(self) -> int:
        return sum(self.counts.values())

    @property
    def series_per_minute(self) -> float:
        return 60.0 * self.screened / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        where = f"{self.workers} Ray worker(s)" if self.workers else "in-process"
        out = [f"{self.total} series: " + ", ".join(f"{self.counts[s]} {s}" for s in STATUSES)
               + f", {self.already_finished} finished earlier (not screened again)",
               f"{self.screened} screened in {self.seconds:.1f} s on {where} (models loaded in {self.startup_s:.1f} s): "
               f"{self.series_per_minute:.1f} series/min"
               + (f", {self.retried} retried after a worker was lost" if self.retried else "")]
        if self.step_seconds:
            steps = ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.step_seconds.items(), key=lambda kv: -kv[1]))
            out.append(f"time per step (s, summed over series): {steps}")
        return out

