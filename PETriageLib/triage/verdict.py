"""Per-slice cascade results -> one patient verdict (whether a series may be triaged at all is
``triage.eligibility``'s question).

Verdicts: ``pe_suspected``, ``other_disease``, ``no_finding``, ``not_analysable``.
Rule (the seed paper's): a patient is positive when any slice is positive; optionally a run
of ``min_run`` consecutive positive slices is required, which suppresses single-slice noise.
With a patient classifier (``triage.series_models``; trained by ``training.series_models``), its
probability decides PE instead; the slice labels still decide "other disease" and show where.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from PETriageLib.vocabulary import SLICE_LABELS


@dataclass
class SliceRow:
    """One axial slice's result. Probabilities are None where that stage did not run."""

    index: int  # 0-based, ascending position along the slice normal (feet -> head)
    z: float
    instance_uid: str
    has_lung: bool
    analysable: bool
    p_disease: float | None = None
    p_pe: float | None = None
    label: str | None = None  # wnl / other / pe; None when the slice was not analysed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PatientVerdict:
    verdict: str
    reason: str
    rule: str
    min_run: int
    threshold_disease: float
    threshold_pe: float
    pe_score: float | None = None  # best run score of p_pe over diseased slices (0 if none)
    disease_score: float | None = None  # best run score of p_disease over analysed slices
    max_pe_slice: int | None = None  # index of the slice with the highest p_pe
    pe_ranges: list[tuple[int, int]] = field(default_factory=list)  # inclusive index runs
    disease_ranges: list[tuple[int, int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    patient_probability: float | None = None  # the patient classifier's p(PE), when one ran
    patient_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pe_ranges"] = [list(r) for r in self.pe_ranges]
        d["disease_ranges"] = [list(r) for r in self.disease_ranges]
        return d


def label_slice(p_disease: float | None, p_pe: float | None, threshold_disease: float,
                threshold_pe: float) -> str | None:
    """Cascade label of one slice: stage 1 decides wnl vs disease, stage 2 pe vs other."""
    if p_disease is None:
        return None
    if p_disease < threshold_disease:
        return "wnl"
    if p_pe is None:
        raise ValueError("a diseased slice needs a stage 2 probability")
    return "pe" if p_pe >= threshold_pe else "other"


def runs(mask: Sequence[bool]) -> list[tuple[int, int]]:
    """Inclusive (start, end) index ranges of consecutive True values."""
    out: list[tuple[int, int]] = []
    start = None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def run_score(scores: np.ndarray, min_run: int) -> float:
    """Max over windows of ``min_run`` consecutive slices of the window's minimum score.

    With min_run = 1 this is the max; the score reaches a threshold exactly when some run of
    ``min_run`` slices is at or above it, so score and verdict always agree.
    """
    if len(scores) < min_run:
        return 0.0
    windows = np.lib.stride_tricks.sliding_window_view(scores, min_run)
    return float(windows.min(axis=1).max())


def patient_verdict(
    rows: Sequence[SliceRow],
    threshold_disease: float = 0.5,
    threshold_pe: float = 0.5,
    min_run: int = 1,
    not_analysable_reason: str | None = None,
    patient_probability: float | None = None,
    patient_threshold: float | None = None,
) -> PatientVerdict:
    """Aggregate slice rows (in index order) into the patient verdict.

    ``patient_probability`` / ``patient_threshold``: a patient classifier's p(PE) and operating
    point; when given, PE is suspected exactly when p >= threshold, whatever the slice labels.
    """
    if min_run < 1:
        raise ValueError(f"min_run must be >= 1, got {min_run}")
    if (patient_probability is None) != (patient_threshold is None):
        raise ValueError("a patient probability needs its threshold, and a threshold its probability")
    rule = "any slice" if min_run == 1 else f"{min_run} consecutive slices"
    if patient_probability is not None:
        rule = "patient classifier"
    base = dict(rule=rule, min_run=min_run, threshold_disease=threshold_disease, threshold_pe=threshold_pe,
                patient_probability=patient_probability, patient_threshold=patient_threshold)
    labels = [r.label for r in rows]
    counts = {name: labels.count(name) for name in SLICE_LABELS}
    counts["analysed"] = sum(r.analysable for r in rows)
    counts["slices"] = len(rows)
    if not_analysable_reason is None and counts["analysed"] == 0:
        not_analysable_reason = "no slice with lung was found"
    if not_analysable_reason is not None:
        return PatientVerdict("not_analysable", not_analysable_reason, counts=counts, **base)

    # A slice's PE score counts only where stage 1 called it diseased, as the cascade does.
    pe = np.array([r.p_pe if r.label in ("pe", "other") else 0.0 for r in rows], float)
    dis = np.array([r.p_disease if r.p_disease is not None else 0.0 for r in rows], float)
    pe_ranges = runs([lab == "pe" for lab in labels])
    disease_ranges = runs([lab in ("pe", "other") for lab in labels])
    pe_score, disease_score = run_score(pe, min_run), run_score(dis, min_run)
    with_pe = [r for r in rows if r.p_pe is not None and r.label in ("pe", "other")]
    max_pe_slice = max(with_pe, key=lambda r: r.p_pe).index if with_pe else None

    long_pe = [r for r in pe_ranges if r[1] - r[0] + 1 >= min_run]
    long_dis = [r for r in disease_ranges if r[1] - r[0] + 1 >= min_run]
    by_classifier = patient_probability is not None
    if by_classifier and patient_probability >= patient_threshold:
        verdict, reason = "pe_suspected", (f"patient classifier p(PE) {patient_probability:.3f} >= "
                                           f"{patient_threshold:.3f}; {counts['pe']} slice(s) classified pe")
    elif long_pe and not by_classifier:
        n = sum(b - a + 1 for a, b in long_pe)
        verdict, reason = "pe_suspected", f"{n} slice(s) classified pe ({rule} rule), max p_pe {pe_score:.3f}"
    elif long_dis:
        why = (f"patient classifier p(PE) {patient_probability:.3f} < {patient_threshold:.3f}"
               if by_classifier else "none meets the pe rule")
        verdict, reason = "other_disease", f"{counts['other'] + counts['pe']} diseased slice(s), {why}"
    else:
        verdict, reason = "no_finding", f"no run of {min_run} diseased slice(s) among {counts['analysed']} analysed"
    return PatientVerdict(
        verdict, reason, pe_score=pe_score, disease_score=disease_score, max_pe_slice=max_pe_slice,
        pe_ranges=pe_ranges, disease_ranges=disease_ranges, counts=counts, **base,
    )
