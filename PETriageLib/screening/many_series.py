"""Many series screened into one ranked worklist. One bad series never stops the rest: it becomes
an entry with its reason (``not_analysable`` when the gate refuses it, ``error`` when it cannot be
read or triaged)."""
from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from PETriageLib.errors import PETriageError
from PETriageLib.ingest.limits import modality_problem
from PETriageLib.ingest.load import scan_series
from PETriageLib.progress import Cancelled, Progress, raise_if_cancelled, report_progress
from PETriageLib.reporting.names import safe_name
from PETriageLib.reporting.report import ReportFiles
from PETriageLib.screening.one_series import ScreenedSeries, ScreenOptions, screen_files, write_series_report
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
                   on_series: "Callable[[SeriesSource, WorklistEntry, ScreenedSeries | None], None] | None" = None,
                   background_writing: bool = True) -> list[WorklistEntry]:
    """Screen each source (reports under ``out_root`` when given); the ranked worklist.

    ``progress``: per series; ``step_progress``: within a series (reading, lungs, stages, Grad-CAM);
    ``on_series``: called after each series with its entry (and its screening, when it ran), in
    order, once its report is written. ``background_writing``: series N's report is written in a
    background thread while series N + 1 is read and triaged (the same files; a failure to write
    still makes N's entry an error); False writes each report before the next series starts.
    """
    entries: list[WorklistEntry] = []
    many = len(sources) > 1
    pending: "_Pending | None" = None
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="petriage-report") if background_writing else None

    def finish(p: "_Pending | None") -> None:
        if p is not None:
            entry, screened = p.finish()
            entries.append(entry)
            if on_series is not None:
                on_series(p.source, entry, screened)

    try:
        for n, src in enumerate(sources):
            raise_if_cancelled(cancel, "screening", n, len(sources), "series")
            report_progress(progress, n, len(sources), f"series {n + 1}/{len(sources)}")
            out_dir = None if out_root is None else Path(out_root) / report_dir_name(n + 1, src, many)
            current = _screen_one(src, cascade, options, out_dir, step_progress, cancel, writer)
            finish(pending)  # series N's report was written while series N + 1 ran
            pending = current
        finish(pending)
        pending = None
    except Cancelled:  # the series done before the cancel keep their entry and on_series call
        done, pending = pending, None
        finish(done)
        raise
    finally:
        if pending is not None:  # cancelled (or a defect): the report being written is finished, not cut off
            pending.wait()
        if writer is not None:
            writer.shutdown(wait=True)
    report_progress(progress, len(sources), len(sources), "done")
    return rank_worklist(entries)


@dataclass
class _Pending:
    """One screened series whose report may still be being written."""

    source: SeriesSource
    screened: ScreenedSeries | None = None
    out_dir: Path | None = None
    writing: "Future[ReportFiles] | None" = None
    entry: WorklistEntry | None = None  # when known without the report (refused, failed)

    def wait(self) -> None:
        if self.writing is not None:
            try:
                self.writing.result()
            except Exception:
                pass  # reported by finish(), or moot when the run was cancelled

    def finish(self) -> "tuple[WorklistEntry, ScreenedSeries | None]":
        if self.entry is not None:
            return self.entry, self.screened
        src, screened = self.source, self.screened
        if self.writing is not None:
            try:
                screened.files = self.writing.result()
            except Exception as exc:
                return _failed(src, exc), None
        return WorklistEntry.from_result(screened.result, "" if self.out_dir is None else str(self.out_dir),
                                         src.source), screened


def _failed(src: SeriesSource, exc: BaseException) -> WorklistEntry:
    entry = WorklistEntry.not_triaged("error", failure_reason(exc), src.series_uid, len(src.files),
                                      src.description, src.source)
    log.error("series %s: %s", src.series_uid, entry.reason,
              exc_info=not isinstance(exc, PETriageError) or log.isEnabledFor(logging.DEBUG))
    return entry


def _screen_one(src: SeriesSource, cascade: Cascade, options: ScreenOptions, out_dir: Path | None,
                step_progress: Progress | None, cancel: Any, writer: ThreadPoolExecutor | None) -> _Pending:
    """Read and triage one source; its report written here, or handed to ``writer``."""
    refused = modality_problem(src.modality)
    if refused:
        return _Pending(src, entry=WorklistEntry.not_triaged("not_analysable", refused, src.series_uid,
                                                             len(src.files), src.description, src.source))
    try:
        if writer is None:
            screened = screen_files(cascade, src.files, src.series_uid, options, out_dir, step_progress, cancel)
            return _Pending(src, screened, out_dir)
        screened = screen_files(cascade, src.files, src.series_uid, options, None, step_progress, cancel)
        if out_dir is None:
            return _Pending(src, screened, None)
        return _Pending(src, screened, out_dir, writer.submit(write_series_report, screened, out_dir, options))
    except Cancelled:
        raise
    except Exception as exc:  # one bad series must not stop the worklist
        return _Pending(src, entry=_failed(src, exc))
