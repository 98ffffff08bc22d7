"""Many triaged series as one worklist: an entry per series, ranked so that the likeliest PE
comes first and the series that got no verdict come last, for a human to see."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

from PETriageLib.triage.result import TriageResult


@dataclass(frozen=True)
class WorklistEntry:
    verdict: str  # a VERDICTS value, or "error" when the series could not be read or triaged
    reason: str | None
    series_uid: str | None = None
    series_description: str | None = None
    patient_id: str | None = None
    study_date: str | None = None
    num_slices: int | None = None
    pe_score: float | None = None
    patient_probability: float | None = None
    disease_score: float | None = None
    max_pe_slice: int | None = None
    report_dir: str = ""
    source: str = ""  # where the series can be loaded from again (a folder, or Slicer's DICOM database)
    rank: int | None = None
    clot_volume_ml: float | None = None  # the embolus segmentation's, None when none ran
    clot_slices: str | None = None  # "a-b" of the slices with clot ("" when it found none)

    @classmethod
    def from_result(cls, result: TriageResult, report_dir: str = "", source: str = "") -> "WorklistEntry":
        v, s = result.verdict, result.series_info()
        return cls(verdict=v.verdict, reason=v.reason, series_uid=s.get("series_uid"),
                   series_description=s.get("series_description"), patient_id=s.get("patient_id"),
                   study_date=s.get("study_date"), num_slices=result.volume.num_slices, pe_score=v.pe_score,
                   patient_probability=v.patient_probability, disease_score=v.disease_score,
                   max_pe_slice=v.max_pe_slice, report_dir=str(report_dir), source=source,
                   clot_volume_ml=None if result.embolus is None else result.embolus.volume_ml,
                   clot_slices=None if result.embolus is None else result.embolus.slices_text())

    @classmethod
    def not_triaged(cls, verdict: str, reason: str, series_uid: str | None, num_slices: int | None,
                    series_description: str | None = None, source: str = "") -> "WorklistEntry":
        """A series that got no verdict: refused by the gate (``not_analysable``) or failed (``error``)."""
        return cls(verdict=verdict, reason=reason, series_uid=series_uid, num_slices=num_slices,
                   series_description=series_description, source=source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rank_key(e: WorklistEntry) -> tuple:
    # the patient classifier's p(PE) where it ran, else the PE score; then the disease score
    first = e.pe_score if e.patient_probability is None else e.patient_probability
    return (0 if e.pe_score is not None else 1, -(first or 0.0), -(e.disease_score or 0.0))


def rank_worklist(entries: Sequence[WorklistEntry]) -> list[WorklistEntry]:
    """Entries sorted by PE likelihood (highest first) with their 1-based rank set; unscored last."""
    return [replace(e, rank=i) for i, e in enumerate(sorted(entries, key=_rank_key), 1)]
