"""Choose and score patient rules on a split's slice probabilities.

A series is flagged for PE by the same rule as ``triage.verdict`` applies (on an evaluation's
probabilities, which may differ slightly from triage's fast path): ``min_run`` consecutive slices
with lung whose p(disease) >= the stage 1 threshold and p(PE) >= the stage 2 threshold. The choice
searches stage 1 thresholds, stage 2 thresholds and run lengths for the highest patient
specificity among the rules whose patient PE sensitivity reaches the target on the validation
series; every count comes with its Wilson 95% interval.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from PETriageLib.models.patient_rules import PatientRule
from PETriageLib.training.cache import CachedSource
from PETriageLib.training.metrics import fmt_count_ci, wilson_interval
from PETriageLib.training.tables import markdown_table
from PETriageLib.triage.verdict import run_score

# Candidate thresholds: fine near 0 and 1, where the probabilities of these models crowd.
THRESHOLD_GRID = tuple(sorted({0.001, 0.002, 0.005, *np.round(np.arange(0.01, 1.0, 0.01), 2).tolist(),
                               0.995, 0.998, 0.999}))
MIN_RUNS = (1, 2, 3, 4, 5, 6)


@dataclass
class SeriesProbabilities:
    """One series' slices in position order: both stages' probabilities and which slices have lung."""

    patient_id: str
    has_pe: bool
    p_disease: np.ndarray
    p_pe: np.ndarray
    has_lung: np.ndarray

    def pe_score(self, threshold_disease: float, min_run: int) -> float:
        """The highest stage 2 threshold at which this series is still flagged (0: never)."""
        passes = self.has_lung & (self.p_disease >= threshold_disease)
        return run_score(np.where(passes, self.p_pe, 0.0), min_run)

    def flagged(self, rule: PatientRule) -> bool:
        """Whether triage flags this series for PE under ``rule`` (a run of slices labelled pe)."""
        pe = self.has_lung & (self.p_disease >= rule.threshold_disease) & (self.p_pe >= rule.threshold_pe)
        return run_score(pe.astype(float), rule.min_run) >= 1.0


@dataclass
class RuleScore:
    """A rule's patient counts on one set of series (PE against every non-PE series)."""

    rule: PatientRule
    true_positive: int
    positives: int
    true_negative: int
    negatives: int
    flagged: list["tuple[str, bool]"] = field(default_factory=list)  # (patient_id, flagged for PE) per series

    @property
    def sensitivity(self) -> float:
        return self.true_positive / self.positives if self.positives else math.nan

    @property
    def specificity(self) -> float:
        return self.true_negative / self.negatives if self.negatives else math.nan

    def to_dict(self) -> dict[str, Any]:
        def count(k: int, n: int) -> dict:
            low, high = wilson_interval(k, n)
            return {"correct": k, "total": n, "value": k / n if n else None,
                    "ci_low": None if n == 0 else low, "ci_high": None if n == 0 else high}
        return {"rule": {"threshold_disease": self.rule.threshold_disease, "threshold_pe": self.rule.threshold_pe,
                         "min_run": self.rule.min_run, "text": self.rule.describe()},
                "sensitivity": count(self.true_positive, self.positives),
                "specificity": count(self.true_negative, self.negatives),
                "flagged": [{"patient_id": p, "flagged": f} for p, f in self.flagged]}


def series_probabilities(cached: Sequence[CachedSource], p1: Sequence[np.ndarray], p2: Sequence[np.ndarray]
                         ) -> list[SeriesProbabilities]:
    """The evaluation's cached sources and both stages' probabilities, one entry per series."""
    return [SeriesProbabilities(c.patient_id, c.patient_label == "pe", np.asarray(a, float), np.asarray(b, float),
                                np.asarray(c.has_lung, bool)) for c, a, b in zip(cached, p1, p2)]


def read_slice_csv(path: "str | Path") -> list[SeriesProbabilities]:
    """The series of an evaluation's slices.csv (``petriage evaluate``), in its order."""
    rows: dict[int, list[dict]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if "series" not in (reader.fieldnames or []):
            raise ValueError(f"{path} has no 'series' column: it was written by an older petriage evaluate; "
                             "run the evaluation again")
        for r in reader:
            rows.setdefault(int(r["series"]), []).append(r)
    out = []
    for _, slices in sorted(rows.items()):
        slices.sort(key=lambda r: int(r["slice_index"]))
        out.append(SeriesProbabilities(
            slices[0]["patient_id"], slices[0]["patient_label"] == "pe",
            np.array([float(r["p_stage1"]) for r in slices]), np.array([float(r["p_stage2"]) for r in slices]),
            np.array([r["has_lung"] == "1" for r in slices])))
    if not out:
        raise ValueError(f"{path} holds no slices")
    return out


def score_rule(series: Sequence[SeriesProbabilities], rule: PatientRule) -> RuleScore:
    """The rule's patient sensitivity and specificity on these series."""
    flagged = [s.flagged(rule) for s in series]
    has_pe = [s.has_pe for s in series]
    return RuleScore(rule, sum(f and p for f, p in zip(flagged, has_pe)), sum(has_pe),
                     sum(not f and not p for f, p in zip(flagged, has_pe)), len(series) - sum(has_pe),
                     [(s.patient_id, f) for s, f in zip(series, flagged)])


def choose_patient_rule(series: Sequence[SeriesProbabilities], target_sensitivity: float = 0.95,
                        thresholds: Iterable[float] = THRESHOLD_GRID, min_runs: Iterable[int] = MIN_RUNS
                        ) -> RuleScore:
    """The rule with the highest specificity among those reaching ``target_sensitivity`` on these
    series (ties: higher sensitivity, then the shorter run and the lower thresholds, which keep
    more sensitivity in reserve on new patients). Raises ValueError when the series lack PE or
    non-PE patients, or when no rule reaches the target."""
    pe = [s for s in series if s.has_pe]
    rest = [s for s in series if not s.has_pe]
    if not pe or not rest:
        raise ValueError(f"choosing a patient rule needs PE and non-PE series; these have {len(pe)} with PE "
                         f"and {len(rest)} without")
    grid = np.array(sorted(set(thresholds)), float)
    if grid.min() <= 0:
        raise ValueError("the stage 2 thresholds must be above 0 (a threshold of 0 flags every series)")
    best_key, best = None, None
    for min_run in sorted(set(min_runs)):
        for t1 in grid:
            pos = np.array([s.pe_score(t1, min_run) for s in pe])
            neg = np.array([s.pe_score(t1, min_run) for s in rest])
            sens = (pos[:, None] >= grid[None, :]).mean(axis=0)
            spec = (neg[:, None] < grid[None, :]).mean(axis=0)
            for j in np.flatnonzero(sens >= target_sensitivity - 1e-12):
                key = (spec[j], sens[j], -min_run, -t1, -grid[j])
                if best_key is None or key > best_key:
                    best_key, best = key, (float(t1), float(grid[j]), min_run)
    if best is None:
        top = max(np.mean([s.pe_score(0.0, 1) > 0 for s in pe]), 0.0)
        raise ValueError(f"no rule reaches a patient sensitivity of {target_sensitivity:.0%} on these series "
                         f"(at most {top:.0%} of the PE series have any slice passing both stages)")
    rule = PatientRule(best[0], best[1], best[2], target_sensitivity=target_sensitivity)
    return score_rule(series, rule)


def rule_table(rows: Sequence["tuple[str, RuleScore]"]) -> str:
    """One row per (set, rule): PE sensitivity and specificity with their Wilson 95% intervals."""
    head = ["Series", "Rule", "PE patients flagged (sensitivity, 95% CI)", "Non-PE patients kept (specificity, 95% CI)"]
    return markdown_table(head, [(label, r.rule.describe(), fmt_count_ci(r.true_positive, r.positives),
                                  fmt_count_ci(r.true_negative, r.negatives)) for label, r in rows])
