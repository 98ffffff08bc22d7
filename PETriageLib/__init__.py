"""PETriageLib: everything in PETriage that needs no 3D Slicer.

One folder per step of the data flow, in the order the data meets them (imports only go from a
later step to an earlier one; ``Testing/test_layering.py`` keeps it so):

    ingest/      DICOM files -> CTVolume              preprocess/  CTVolume -> model inputs
    models/      networks, fast path, checkpoints     triage/      slice probabilities -> verdict
    explain/     Grad-CAM heatmaps                    reporting/   result -> files
    screening/   the loop: one series or many -> ranked worklist

``training/``, ``phantom/``, ``bench/`` and ``cli/`` use the steps; the steps never import them.
The names below are the public API, imported on first use (``import PETriageLib`` loads no torch):

    from PETriageLib import build_cascade, screen_files
    cascade = build_cascade("cbamdrn_d22_demo_stage1", "cbamdrn_d22_demo_stage2", device="cpu")
    screened = screen_files(cascade, "path/to/series", out_dir="report")
    print(screened.result.verdict.verdict)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "CTVolume": "PETriageLib.ingest.volume",
    "SeriesInfo": "PETriageLib.ingest.scan",
    "scan_series": "PETriageLib.ingest.load",
    "load_series": "PETriageLib.ingest.load",
    "PreprocessConfig": "PETriageLib.preprocess.slices",
    "prepare_slices": "PETriageLib.preprocess.slices",
    "analyse_lungs": "PETriageLib.preprocess.lungs",
    "build_model": "PETriageLib.models.registry",
    "list_models": "PETriageLib.models.registry",
    "load_stage": "PETriageLib.triage.stages",
    "default_models": "PETriageLib.triage.stages",
    "Cascade": "PETriageLib.triage.cascade",
    "build_cascade": "PETriageLib.triage.cascade",
    "CascadeOptions": "PETriageLib.triage.options",
    "TriageResult": "PETriageLib.triage.result",
    "PatientVerdict": "PETriageLib.triage.verdict",
    "SliceRow": "PETriageLib.triage.verdict",
    "triage_problem": "PETriageLib.triage.eligibility",
    "WorklistEntry": "PETriageLib.triage.worklist",
    "rank_worklist": "PETriageLib.triage.worklist",
    "Heatmaps": "PETriageLib.explain.heatmaps",
    "compute_heatmaps": "PETriageLib.explain.heatmaps",
    "select_cam_slices": "PETriageLib.explain.cam_slices",
    "write_report": "PETriageLib.reporting.report",
    "write_worklist_csv": "PETriageLib.reporting.worklist_csv",
    "ScreenOptions": "PETriageLib.screening.one_series",
    "ScreenedSeries": "PETriageLib.screening.one_series",
    "screen_volume": "PETriageLib.screening.one_series",
    "screen_files": "PETriageLib.screening.one_series",
    "SeriesSource": "PETriageLib.screening.many_series",
    "folder_sources": "PETriageLib.screening.many_series",
    "screen_sources": "PETriageLib.screening.many_series",
    "PETriageError": "PETriageLib.errors",
    "SeriesError": "PETriageLib.errors",
    "NotAnalysableError": "PETriageLib.errors",
    "CheckpointError": "PETriageLib.errors",
    "Cancelled": "PETriageLib.progress",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'PETriageLib' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
