"""The domain check at triage: a series' score against stage 1's training-data statistics
(``models.domain_stats.DomainModel``), and whether triage refuses, warns or does not check."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MAX_SLICES = 24  # slices scored per series at triage: a low percentile needs no more


@dataclass(frozen=True)
class DomainCheck:
    """One series' score against a checkpoint's domain threshold."""

    score: float
    threshold: float
    quantile: float
    slices: int
    model: str

    @property
    def in_domain(self) -> bool:
        return self.score <= self.threshold

    def reason(self) -> str:
        return (f"the series is unlike the data model {self.model} was trained on: feature distance "
                f"{self.score:.0f} ({self.quantile:g}th percentile of {self.slices} slices) exceeds "
                f"{self.threshold:.0f}, the limit set on its validation series, so its probabilities "
                "cannot be trusted here (kept per slice for inspection); fine-tune on data like this "
                "series, or triage with domain check 'warn' to see the verdict anyway")

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 2), "threshold": round(self.threshold, 2), "quantile": self.quantile,
                "slices": self.slices, "model": self.model, "in_domain": self.in_domain}


def spread(indices: Sequence[int], n: int = MAX_SLICES) -> list[int]:
    """At most n of the indices, evenly spaced over the series (all of them when fewer)."""
    indices = list(indices)
    if len(indices) <= n:
        return indices
    return [indices[int(round(i))] for i in np.linspace(0, len(indices) - 1, n)]
