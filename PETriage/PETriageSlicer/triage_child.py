"""The triage child process: ``python -m PETriageSlicer.triage_child JOB_DIR``.

JOB_DIR/job.pickle (written by triage_jobs.py in the parent) holds the kind ("triage": one CTVolume,
"screen": SeriesSource list) and the TriageSettings. The child runs PETriageLib's screening loop,
prints progress lines, and writes JOB_DIR/result.pickle (or JOB_DIR/error.txt and exits 1), and
JOB_DIR/report/ (report.json, embolus_mask.nrrd, ...) when an embolus segmentation ran.
Never imports slicer: it runs in PythonSlicer or any Python with PETriageLib and torch.
"""
from __future__ import annotations

import dataclasses
import logging
import pickle
import sys
import traceback
from pathlib import Path

from PETriageLib.atomic import atomic_write

from PETriageSlicer.child_process import PROGRESS_PREFIX
from PETriageSlicer.embolus_report import REPORT_SUBFOLDER, write_embolus_report
from PETriageSlicer.settings import build_cascade_for

JOB_FILE, RESULT_FILE, ERROR_FILE = "job.pickle", "result.pickle", "error.txt"


def report(done: int, total: int, message: str = "") -> None:
    print(f"{PROGRESS_PREFIX}{int(done)} {int(total)} {message}", flush=True)


def run(job_dir: Path) -> object:
    from PETriageLib.screening.many_series import screen_sources
    from PETriageLib.screening.one_series import ScreenOptions, screen_volume

    job = pickle.loads((job_dir / JOB_FILE).read_bytes())
    settings = job["settings"]
    if job.get("torch_threads"):
        import torch

        torch.set_num_threads(int(job["torch_threads"]))
    report(0, 0, "loading the models")
    cascade = build_cascade_for(settings)
    if job["kind"] == "triage":
        options = ScreenOptions(cam=settings.cam, top_k=settings.top_k)
        screened = screen_volume(cascade, job["volume"], options, progress=report)
        write_embolus_report(screened.result, job_dir / REPORT_SUBFOLDER)  # handed back when segmentation ran
        # The parent already holds the voxels: send back everything else.
        return dataclasses.replace(screened, result=dataclasses.replace(screened.result, volume=None))
    if job["kind"] == "screen":
        return screen_sources(job["sources"], cascade, ScreenOptions(cam="none"), progress=report)
    raise ValueError(f"{job_dir / JOB_FILE}: unknown job kind {job['kind']!r}")


def main(argv: "list[str]") -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    job_dir = Path(argv[0])
    try:
        value = run(job_dir)
    except Exception as exc:
        traceback.print_exc()
        (job_dir / ERROR_FILE).write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
        return 1
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    atomic_write(job_dir / RESULT_FILE, lambda tmp: tmp.write_bytes(data))  # never half a result
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
