"""The driver: the tasks not finished yet go to the workers, a bounded number at a time; each
outcome goes into the store as it arrives; a series whose worker died is screened again (up to
``max_attempts``); at the end the ranked worklist of every series of the source."""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import replace
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

from PETriageLib.atomic import atomic_write
from PETriageLib.cluster.actors import RayWorkerPool, WorkerLost
from PETriageLib.cluster.store import ResultStore, SeriesOutcome, publish_report, status_of
from PETriageLib.cluster.archive_summary import ArchiveSummary
from PETriageLib.cluster.task import SeriesTask
from PETriageLib.cluster.screener import CascadeSpec, models_key, models_of
from PETriageLib.reporting.worklist_csv import write_worklist_csv
from PETriageLib.screening.many_series import ScreenedSeries, SeriesSource, screen_sources
from PETriageLib.screening.one_series import ScreenOptions
from PETriageLib.triage.worklist import WorklistEntry

log = logging.getLogger(__name__)

OnOutcome = Callable[[SeriesOutcome], None]
OnStart = Callable[[ArchiveSummary], None]  # once the workers are up: what is left to do


def pending_tasks(tasks: Sequence[SeriesTask], store: ResultStore, key: str) -> list[SeriesTask]:
    """The tasks a rerun still has to do: not done nor skipped with these models (failed ones retried)."""
    finished = store.finished(key)
    return [t for t in tasks if t.series_uid not in finished]


class _Bookkeeping:
    """What both paths share: the model set registered, the tasks left, each outcome stored as it ends."""

    def __init__(self, tasks: Sequence[SeriesTask], store: ResultStore, models: dict, workers: int,
                 on_outcome: OnOutcome | None, on_start: OnStart | None, started: float) -> None:
        self.store, self.on_outcome, self.started = store, on_outcome, started
        self.key = models_key(models)
        store.register_models(self.key, models)
        self.todo = pending_tasks(tasks, store, self.key)
        self.summary = ArchiveSummary(len(tasks), len(tasks) - len(self.todo), workers)
        if on_start is not None:
            on_start(self.summary)
        self.t0 = time.perf_counter()  # the models are loaded: screening starts

    def finish(self, outcome: SeriesOutcome) -> None:
        self.store.record(self.key, outcome)
        self.summary.add(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def result(self) -> tuple[str, ArchiveSummary]:
        self.summary.seconds = time.perf_counter() - self.t0
        self.summary.startup_s = self.t0 - self.started
        return self.key, self.summary


def screen_on_ray(tasks: Sequence[SeriesTask], pool: RayWorkerPool, store: ResultStore, max_attempts: int = 3,
                  on_outcome: OnOutcome | None = None, on_start: OnStart | None = None
                  ) -> tuple[str, ArchiveSummary]:
    """Screen ``tasks`` with the pool's actors into ``store``: (models key, summary)."""
    t0 = time.perf_counter()
    models = pool.models()  # waits until every actor has loaded them
    run = _Bookkeeping(tasks, store, models, len(pool.actors), on_outcome, on_start, t0)
    todo = deque(run.todo)
    tries: dict[str, int] = {}
    while todo or pool.in_flight:
        while todo and pool.in_flight < pool.capacity:  # back-pressure: a bounded number in flight
            pool.submit(todo.popleft())
        for task, answer in pool.wait():
            uid = task.series_uid
            tries[uid] = tries.get(uid, 0) + 1
            if isinstance(answer, WorkerLost):
                if tries[uid] < max_attempts:
                    todo.appendleft(task)  # first in line: its files are likely in the page cache
                    continue
                entry = WorklistEntry.not_triaged("error", f"worker lost {tries[uid]} times: {answer.error}", uid,
                                                  task.num_instances, task.description, task.source)
                answer = SeriesOutcome(uid, "failed", entry)
            run.finish(replace(answer, attempts=tries[uid]))
    return run.result()


def screen_in_process(tasks: Sequence[SeriesTask], spec: CascadeSpec, options: ScreenOptions, store: ResultStore,
                      on_outcome: OnOutcome | None = None, on_start: OnStart | None = None
                      ) -> tuple[str, ArchiveSummary]:
    """The same store and outcomes without Ray: one series at a time through ``screen_sources``."""
    t0 = time.perf_counter()
    cascade = spec.build()
    run = _Bookkeeping(tasks, store, models_of(cascade), 0, on_outcome, on_start, t0)
    for task in run.todo:
        run.finish(_screen_here(task, cascade, options, store.reports))
    return run.result()


def _screen_here(task: SeriesTask, cascade: object, options: ScreenOptions, reports: Path) -> SeriesOutcome:
    t = time.perf_counter()
    reports.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=reports))
    timings: dict[str, float] = {}

    def keep_timings(src: SeriesSource, entry: WorklistEntry, screened: ScreenedSeries | None) -> None:
        if screened is not None:
            timings.update(screened.result.timings)

    try:
        files = list(task.files)
        if task.dicomweb_url:  # fetched here, then read like a folder
            from PETriageLib.cluster.dicomweb import fetch_series

            files = fetch_series(task, staged / "dicom")
        [entry] = screen_sources([task.as_source(files)], cascade, options, out_root=staged / "reports",
                                 on_series=keep_timings)
        if entry.report_dir:
            final = publish_report(Path(entry.report_dir), reports / Path(entry.report_dir).name)
            entry = replace(entry, report_dir=str(final))
    except Exception as exc:  # the fetch failed; screen_sources itself never raises for a series
        entry = WorklistEntry.not_triaged("error", f"{type(exc).__name__}: {exc}", task.series_uid,
                                          task.num_instances, task.description, task.source)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return SeriesOutcome(task.series_uid, status_of(entry), entry, 1, timings, time.perf_counter() - t, "in-process")


def write_worklist(store: ResultStore, key: str, tasks: Sequence[SeriesTask]) -> Path:
    """OUT/worklist.csv: every series of the source, ranked, written atomically."""
    ranked = store.worklist(key, [t.series_uid for t in tasks])
    return atomic_write(store.out_dir / "worklist.csv", lambda tmp: write_worklist_csv(ranked, tmp))
