"""Triage of complete series from the queue, through the screening loop with the options of
`petriage triage`: a series the gate refuses (or that cannot be read) is skipped with the reason,
an unexpected error marks it failed with the error; an analysable one gets its report and DICOM
results under SPOOL/results/<series>/v<version>/ and is queued for sending."""
from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PETriageLib.errors import PETriageError
from PETriageLib.ingest.load import load_series
from PETriageLib.ingest.limits import modality_problem
from PETriageLib.pacs.lost_slices import account_for_skipped
from PETriageLib.pacs.series_queue import SeriesQueue
from PETriageLib.pacs.spool import uid_name
from PETriageLib.reporting.dicom_results import write_dicom_results
from PETriageLib.screening.one_series import ScreenOptions, screen_volume
from PETriageLib.triage.worklist import WorklistEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    state: str  # done | skipped | failed
    reason: str | None
    entry: WorklistEntry | None = None
    result_dir: Path | None = None


def result_dir(spool: Path, series_uid: str, version: int) -> Path:
    return Path(spool) / "results" / uid_name(series_uid) / f"v{version}"


def triage_series(queue: SeriesQueue, cascade: Any, options: ScreenOptions, spool: Path, series_uid: str,
                  version: int) -> Outcome:
    """Triage one claimed series and say how it ended (the caller records it)."""
    row = next(r for r in queue.series() if r.series_uid == series_uid)
    refused = modality_problem(row.modality)
    if refused:
        return Outcome("skipped", refused)
    files = queue.usable_files(series_uid)
    bad = queue.skipped_files(series_uid)
    if not files:
        return Outcome("skipped", "no usable instance" + (f": {bad[0][1]}" if bad else ""))
    out = result_dir(spool, series_uid, version)
    shutil.rmtree(out, ignore_errors=True)  # a triage the process died in left half a folder
    try:
        started = time.perf_counter()
        volume = load_series(files, series_uid=series_uid)
        account_for_skipped(volume, bad)  # lost slices make it not analysable, as in `petriage triage`
        screened = screen_volume(cascade, volume, options, out / "report", time.perf_counter() - started)
    except PETriageError as exc:  # unreadable as a series: refused with the reason, like the gate
        return Outcome("skipped", str(exc))
    result = screened.result
    entry = WorklistEntry.from_result(result, str(out / "report"), str(out))
    if result.verdict.verdict == "not_analysable":
        return Outcome("skipped", result.verdict.reason, entry)
    write_dicom_results(result, screened.heatmaps, out / "dicom")
    if bad:
        log.warning("series %s: %d instance(s) left out (duplicate positions): %s", series_uid, len(bad), bad[0][1])
    return Outcome("done", result.verdict.reason, entry, out)


class Worker(threading.Thread):
    """One triage at a time from the queue until ``stop`` is set (``--workers N`` starts N)."""

    def __init__(self, queue: SeriesQueue, cascade: Any, options: ScreenOptions, spool: Path,
                 send: bool, stop: threading.Event, poll_s: float = 0.5, name: str = "triage-worker") -> None:
        super().__init__(name=name, daemon=True)
        # a cascade of its own: Grad-CAM hooks the model, so workers cannot share one
        self.queue, self.cascade, self.options, self.spool = queue, cascade, options, Path(spool)
        self.send, self.stop, self.poll_s = send, stop, poll_s

    def run(self) -> None:
        cascade = self.cascade
        while not self.stop.is_set():
            job = self.queue.claim()
            if job is None:
                self.stop.wait(self.poll_s)
                continue
            uid, version = job
            log.info("triage of series %s (version %d)", uid, version)
            try:
                o = triage_series(self.queue, cascade, self.options, self.spool, uid, version)
            except Exception as exc:  # one bad series never stops the worker
                log.exception("series %s failed", uid)
                o = Outcome("failed", f"{type(exc).__name__}: {exc}")
            self.queue.finish(uid, version, o.state, o.reason, o.entry,
                              None if o.result_dir is None else str(o.result_dir), send=self.send and o.state == "done")
            log.info("series %s: %s (%s)", uid, o.state if o.entry is None else o.entry.verdict, o.reason)
