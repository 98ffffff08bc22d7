"""One series screened: the cascade, then Grad-CAM on the slices that matter, then (optionally)
its report folder."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from PETriageLib.explain.cam_slices import select_cam_slices
from PETriageLib.explain.heatmaps import Heatmaps, compute_heatmaps
from PETriageLib.ingest.load import load_series
from PETriageLib.ingest.volume import CTVolume
from PETriageLib.vocabulary import CAM_MODES
from PETriageLib.progress import Progress
from PETriageLib.reporting.report import ReportFiles, write_report
from PETriageLib.triage.cascade import Cascade
from PETriageLib.triage.result import TriageResult
from PETriageLib.heap import release_freed_memory


@dataclass(frozen=True)
class ScreenOptions:
    """What screening adds to the cascade: which slices get Grad-CAM, and how reports are written."""

    cam: str = "top-k"  # top-k | pe | none (explain.cam_slices)
    top_k: int = 5
    cam_stage: int = 2  # the stage whose positive class the heatmaps explain
    nifti: bool = False  # heatmaps as .nii.gz instead of .nrrd
    key_images: bool = True

    def __post_init__(self) -> None:
        if self.cam not in CAM_MODES:
            raise ValueError(f"unknown Grad-CAM mode {self.cam!r}; use one of {', '.join(CAM_MODES)}")


@dataclass
class ScreenedSeries:
    result: TriageResult
    heatmaps: Heatmaps | None = None  # None when Grad-CAM did not run
    files: ReportFiles | None = None  # None when no report was written


def screen_volume(cascade: Cascade, volume: CTVolume, options: ScreenOptions = ScreenOptions(),
                  out_dir: "str | Path | None" = None, reading_s: float | None = None,
                  progress: Progress | None = None, cancel: Any = None) -> ScreenedSeries:
    """Triage ``volume``, Grad-CAM on the chosen slices of an analysable series, and write its
    report into ``out_dir`` when given. ``reading_s``: the seconds reading took, for the timings."""
    result = cascade.run(volume, progress=progress, cancel=cancel)
    release_freed_memory()  # the batch loop's freed memory, before Grad-CAM and the report add theirs
    if reading_s is not None:
        result = replace(result, timings={"reading": reading_s, **result.timings})
    heatmaps = None
    if result.verdict.verdict != "not_analysable":
        slices = select_cam_slices(result.rows, options.cam, options.top_k)
        if slices:
            heatmaps = compute_heatmaps(cascade, result, slices, stage=options.cam_stage, progress=progress,
                                        cancel=cancel)
    screened = ScreenedSeries(result, heatmaps)
    if out_dir is not None:
        screened.files = write_series_report(screened, out_dir, options)
    return screened


def write_series_report(screened: ScreenedSeries, out_dir: "str | Path", options: ScreenOptions) -> ReportFiles:
    """The report folder of a screened series (also what the screening loop's background writer runs)."""
    return write_report(screened.result, out_dir, screened.heatmaps, nifti=options.nifti,
                        key_images=options.key_images)


def screen_files(cascade: Cascade, files: "str | Path | Sequence[str | Path]", series_uid: str | None = None,
                 options: ScreenOptions = ScreenOptions(), out_dir: "str | Path | None" = None,
                 progress: Progress | None = None, cancel: Any = None) -> ScreenedSeries:
    """Read one DICOM series (a folder, a file or a list of files), then ``screen_volume``."""
    t = time.perf_counter()
    volume = load_series(files, series_uid=series_uid, progress=progress)
    return screen_volume(cascade, volume, options, out_dir, time.perf_counter() - t, progress, cancel)
