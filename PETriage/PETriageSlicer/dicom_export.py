"""The DICOM results (SR, key images, heatmap Parametric Maps) of a CT's latest triage, written into
a folder by PETriageLib's writer: the same objects `petriage listen` stores back to the PACS. They
reference the CT's own instances, so the CT must have been loaded from its DICOM files."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from PETriageLib.errors import PETriageError
from PETriageLib.reporting.dicom_results import DicomResults, write_dicom_results

from PETriageSlicer.loading import SOURCE_FILES_ATTRIBUTE


def source_files(ct: Any, num_slices: int) -> list[str]:
    """The CT node's DICOM files in slice order, one per slice; a PETriageError when it has none."""
    files = [f for f in (ct.GetAttribute(SOURCE_FILES_ATTRIBUTE) or "").split("|") if f]
    if not files:
        raise PETriageError(f"{ct.GetName()} was not loaded from DICOM files by PETriage: DICOM results "
                            "must reference its instances (load it with Load DICOM folder or from the database)")
    if len(files) != num_slices:
        raise PETriageError(f"{ct.GetName()} has {num_slices} slices but {len(files)} source files: "
                            "DICOM results need one file per slice")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise PETriageError(f"{ct.GetName()}: source file {missing[0]} no longer exists ({len(missing)} missing)")
    return files


def export_dicom_results(ct: Any, result: Any, heatmaps: Any, out_dir: "str | Path") -> DicomResults:
    """Write ``result`` (the CT's TriageResult) and its ``heatmaps`` (or None) as DICOM into ``out_dir``."""
    volume = dataclasses.replace(result.volume, file_paths=source_files(ct, result.volume.num_slices))
    return write_dicom_results(dataclasses.replace(result, volume=volume), heatmaps, out_dir)
