"""Triage and screening in a child process (triage_child.py), published into the scene by the caller.

The GUI thread makes the job (copies the voxels, or queries Slicer's DICOM database: Qt SQL belongs to
the GUI thread), polls it with a QTimer, and on the end calls ``publish()`` on the same thread: the
child never touches MRML, the scene is only changed where it is owned. Cancel kills the child and
removes its folder; nothing was added to the scene.
"""
from __future__ import annotations

import dataclasses
import logging
import pickle
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from PETriageSlicer.child_process import ChildProcess, python_executable
from PETriageSlicer.embolus_report import REPORT_SUBFOLDER
from PETriageSlicer.settings import TriageSettings
from PETriageSlicer.triage_child import ERROR_FILE, JOB_FILE, RESULT_FILE

log = logging.getLogger(__name__)


class ChildJob:
    """A job folder, its child process and its outcome."""

    def __init__(self, job: dict, label: str, job_dir: "str | Path | None" = None) -> None:
        self.dir = Path(job_dir) if job_dir else Path(tempfile.mkdtemp(prefix="petriage-job-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        torch = sys.modules.get("torch")  # the child uses this process's thread budget when it has one
        job = dict(job, torch_threads=torch.get_num_threads() if torch is not None else None)
        (self.dir / JOB_FILE).write_bytes(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        command = [python_executable(), "-m", "PETriageSlicer.triage_child", str(self.dir)]
        self.process = ChildProcess(command, self.dir / "log.txt", label)
        self.label = label

    def start(self) -> "ChildJob":
        self.process.start()
        return self

    def poll(self) -> bool:
        return self.process.poll()

    def wait(self, timeout: Optional[float] = None) -> int:
        return self.process.wait(timeout)

    @property
    def cancelled(self) -> bool:
        return self.process.cancelled

    def cancel(self) -> None:
        self.process.cancel()
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def value(self) -> Any:
        """The child's result; raises RuntimeError naming the failure (with the child's last lines)."""
        if self.process.running:
            raise RuntimeError(f"{self.label} is still running")
        if self.cancelled:
            raise RuntimeError(f"{self.label} was cancelled")
        error = self.dir / ERROR_FILE
        if self.process.returncode != 0 or not (self.dir / RESULT_FILE).is_file():
            reason = error.read_text(encoding="utf-8") if error.is_file() else f"exit code {self.process.returncode}"
            raise RuntimeError(f"{self.label} failed: {reason}\n{self.process.tail()}")
        return pickle.loads((self.dir / RESULT_FILE).read_bytes())


class TriageJob(ChildJob):
    """Triage of one CT volume node in a child process."""

    def __init__(self, logic: Any, ct: Any, settings: TriageSettings, job_dir: "str | Path | None" = None) -> None:
        self.task = logic.prepare(ct, settings)  # the voxels are copied now, on the calling thread
        super().__init__({"kind": "triage", "settings": settings, "volume": self.task.volume},
                         f"Triage of {ct.GetName()}", job_dir)

    def publish(self) -> Any:
        """Result nodes (ResultNodes) for the CT, exactly as the in-process TriageTask.publish makes them."""
        try:
            screened = self.value()
            ct = self.task.ct
            if ct.GetScene() is None or not ct.GetScene().IsNodePresent(ct):
                raise RuntimeError(f"{self.label}: the CT volume was removed from the scene during the run")
            self.task.result = dataclasses.replace(screened.result, volume=self.task.volume)
            self.task.heatmaps = screened.heatmaps
            report = self.dir / REPORT_SUBFOLDER
            return self.task.publish(report if (report / "report.json").is_file() else None)
        finally:
            self.cleanup()


class ScreenJob(ChildJob):
    """Screening of many series (their files) into a ranked worklist, in a child process."""

    def __init__(self, sources: Sequence[Any], settings: TriageSettings, job_dir: "str | Path | None" = None,
                 label: str = "Screening") -> None:
        super().__init__({"kind": "screen", "settings": settings, "sources": list(sources)}, label, job_dir)

    def publish(self, scene: Any = None) -> Any:
        """The worklist table node (one ranked row per series)."""
        from PETriageSlicer.worklist_table import worklist_table

        try:
            return worklist_table(self.value(), scene)
        finally:
            self.cleanup()
