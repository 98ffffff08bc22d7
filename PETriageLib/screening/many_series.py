"""Many series screened into one ranked worklist. One bad series never stops the rest: it becomes
an entry with its reason (``not_analysable`` when the gate refuses it, ``error`` when it cannot be
read or triaged)."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from PETriageLib.errors import PETriageError
from PETriageLib.ingest.limits import modality_problem
from PETriageLib.ingest.load import scan_series
from PETriageLib.progress import Cancelled, Progress, raise_if_cancelled, report_progress
from PETriageLib.reporting.names import safe_name
from PETriageLib.screening.one_series import ScreenedSeries, ScreenOptions, screen_files
from PETriageLib.triage.cascade import Cascade
from PETriageLib.triage.worklist import WorklistEntry, rank_worklist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesSource:
    """Where a series comes from: its files, its UID, and how to load it again (``source``)."""

    files: list[str]
    series_uid: str
    description: str = ""
    modality: str = ""
    source: str = ""


def folder_sources(path: "str | Path", progress: Progress | None = None) -> list[SeriesSource]:
    """Every DICOM series under ``path`` (searched recursively), headers only."""
    return [SeriesSource([str(f) for f in s.files], s.uid, s.description, s.modality or "", str(path))
            for s in scan_series(path, progress=progress)]


def report_dir_name(n: int, source: SeriesSource, many: bool) -> str:
    """Readable and stable: series description + a short hash of the series UID (numbered when many)."""
    tag = hashlib.sha1(str(source.series_uid).encode()).hexdigest()[:8]
    name = safe_name(f"{source.description or 'series'}_{tag}")
    return f"{n:03d}_{name}" if many else name


def failure_reason(exc: BaseException) -> str:
    """A worklist reason: PETriage's own errors speak for themselves; anything else is a defect
    of PETriage, named by its type (and logged with its traceback)."""
    if isinstance(exc, PETriageError):
        return str(exc)
    return f"internal error ({type(exc).__name__}: {exc}); please report it"


def screen_sources(sources: Sequence[SeriesSource], cascade: Cascade, options: ScreenOptions = ScreenOptions(),
                   out_root: "str | Path | None" = None, progress: Progress | None = None,
                   step_progress: Progress | None = None, cancel: Any = None,
                   on_series: "Callable[[SeriesSource, WorklistEntry, ScreenedSeries | None], None] | None" = None
                   ) -> list[WorklistEntry]:
    """Screen each source (reports under ``out_root`` when given); the ranked worklist.

    ``progress``: per series; ``step_progress``: within a series (reading, lungs, stages, Grad-CAM);
    ``on_series``: called after each series with its entry (and its screening, when it ran).
    """
    entries = []
    many = len(sources) > 1
    for n, src in enumerate(sources):
        raise_if_cancelled(cancel, "screening", n, len(sources), "series")
        report_progress(progress, n, len(sources), f"series {n + 1}/{len(sources)}")
        screened = None
        refused = modality_problem(src.modality)
        if refused:
            entry = WorklistEntry.not_triaged("not_analysable", refused, src.series_uid, len(src.files),
                                              src.description, src.source)
        else:
            out_dir = None if out_root is None else Path(out_root) / report_dir_name(n + 1, src, many)
            try:
                screened = screen_files(cascade, src.files, src.series_uid, options, out_dir, step_progress, cancel)
                entry = WorklistEntry.from_result(screened.result, "" if out_dir is None else str(out_dir),
                                                  src.source)
            except Cancelled:
                raise
            except Exception as exc:  # one bad series must not stop the worklist
                entry = WorklistEntry.not_triaged("error", failure_reason(exc), src.series_uid, len(src.files),
                                                  src.description, src.source)
                log.error("series %s: %s", src.series_uid, entry.reason,
                          exc_info=not isinstance(exc, PETriageError) or log.isEnabledFor(logging.DEBUG))
        entries.append(entry)
        if on_series is not None:
            on_series(src, entry, screened)
    report_progress(progress, len(sources), len(sources), "done")
    return rank_worklist(entries)
