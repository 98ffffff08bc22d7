"""One worker: builds the cascade once, then screens series one after another. Reading (the
DICOMweb fetch and the DICOM decode) runs outside the model lock, so a worker called from two
threads (a Ray actor with max_concurrency=2) reads the next series while it triages this one."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PETriageLib.cluster.store import SeriesOutcome, publish_report, status_of
from PETriageLib.cluster.task import SeriesTask
from PETriageLib.ingest.limits import modality_problem
from PETriageLib.ingest.load import load_series
from PETriageLib.screening.many_series import report_dir_name
from PETriageLib.screening.one_series import ScreenOptions, screen_volume
from PETriageLib.triage.cascade import Cascade, build_cascade
from PETriageLib.triage.worklist import WorklistEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CascadeSpec:
    """What ``build_cascade`` needs, small enough to send to every worker (which loads the models)."""

    stage1: str
    stage2: str
    device: str = "cpu"
    patient_model: str | None = None
    refiner: str | None = None
    threshold_disease: float | None = None
    threshold_pe: float | None = None
    options: dict[str, Any] = field(default_factory=dict)  # CascadeOptions fields

    def build(self) -> Cascade:
        return build_cascade(self.stage1, self.stage2, device=self.device, patient_model=self.patient_model,
                             refiner=self.refiner, threshold_disease=self.threshold_disease,
                             threshold_pe=self.threshold_pe, **self.options)


def models_of(cascade: Cascade) -> dict[str, Any]:
    """What decides a verdict: the stage SHA256s, the series models' SHA256s, the cascade options."""
    from PETriageLib.models.checkpoint import file_sha256

    sm = cascade.series_models
    return {"stages": [cascade.stage1.sha256, cascade.stage2.sha256],
            "refiner": None if sm.refiner_path is None else file_sha256(sm.refiner_path),
            "patient_model": None if sm.patient_path is None else file_sha256(sm.patient_path),
            "options": cascade.options.to_dict(), **routing_of(cascade)}


def routing_of(cascade: Cascade) -> dict[str, Any]:
    """The phase routing and segmentation checkpoints, where they change what a verdict is
    (nothing for a plain CTPA cascade, so its key stays as it was)."""
    opts = cascade.options
    if opts.phase == "auto" and not cascade.embolus_models:
        return {}
    return {"phase": opts.phase, "embolus": {pathway: m.sha256
                                             for pathway, m in sorted(cascade.embolus_models.items())}}


def models_key(models: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(models, sort_keys=True).encode()).hexdigest()[:16]


class SeriesScreener:
    """Screens series into ``reports_root``; ``threads``: torch CPU threads for this worker."""

    def __init__(self, spec: CascadeSpec, options: ScreenOptions, reports_root: "str | Path",
                 threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.cascade = spec.build()
        self.options = options
        self.reports_root = Path(reports_root)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._models = models_of(self.cascade)
        self._lock = threading.Lock()  # one triage at a time; reading runs beside it

    def models(self) -> dict[str, Any]:
        return self._models

    def models_key(self) -> str:
        return models_key(self._models)

    def screen(self, task: SeriesTask) -> SeriesOutcome:
        """Read, triage and report one series; every problem becomes the outcome, never an exception."""
        t0 = time.perf_counter()
        refused = modality_problem(task.modality)
        if refused:
            entry = WorklistEntry.not_triaged("not_analysable", refused, task.series_uid, task.num_instances,
                                              task.description, task.source)
            return self._outcome(task, entry, {}, t0)
        staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=self._staging_root()))
        try:
            began = time.time()
            volume, reading_s = self._read(task, staged)
            read = time.time()
            with self._lock:
                screened = screen_volume(self.cascade, volume, self.options, staged / "report", reading_s)
            final = self.reports_root / report_dir_name(0, task.as_source(task.files), many=False)
            publish_report(staged / "report", final)
            entry = WorklistEntry.from_result(screened.result, str(final), task.source)
            return replace(self._outcome(task, entry, dict(screened.result.timings), t0),
                           timeline=(began, read, time.time()))
        except Exception as exc:  # one bad series never stops the worker
            log.error("series %s (%s): %s", task.series_uid, task.source, exc)
            entry = WorklistEntry.not_triaged("error", f"{type(exc).__name__}: {exc}", task.series_uid,
                                              task.num_instances, task.description, task.source)
            return self._outcome(task, entry, {}, t0)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def _staging_root(self) -> Path:
        self.reports_root.mkdir(parents=True, exist_ok=True)
        return self.reports_root

    def _read(self, task: SeriesTask, staged: Path) -> tuple[Any, float]:
        t = time.perf_counter()
        files: list[str] = list(task.files)
        if task.dicomweb_url:
            from PETriageLib.cluster.dicomweb import fetch_series

            files = fetch_series(task, staged / "dicom")
        volume = load_series(files, series_uid=task.series_uid)
        return volume, time.perf_counter() - t

    def _outcome(self, task: SeriesTask, entry: WorklistEntry, timings: dict[str, float], t0: float) -> SeriesOutcome:
        return SeriesOutcome(task.series_uid, status_of(entry), entry, 1, timings, time.perf_counter() - t0, self.name)
