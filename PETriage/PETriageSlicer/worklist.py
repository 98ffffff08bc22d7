"""Screen many series (a folder, or every CT series of Slicer's DICOM database) into a ranked worklist.

Series are triaged straight from their files (no nodes are made), ranked by PE score with
PETriageLib's worklist rule, and listed in a table node; any row can then be loaded.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import slicer

from PETriageSlicer.results import add_column

log = logging.getLogger(__name__)

DATABASE = "dicomdb"  # 'source' of rows that come from slicer.dicomDatabase
COLUMNS = {"rank": "int", "verdict": "str", "pe_score": "float", "disease_score": "float",
           "max_pe_slice": "float", "patient_id": "str", "study_date": "str", "series_uid": "str",
           "series_description": "str", "num_slices": "float", "reason": "str", "source": "str"}


@dataclass
class SeriesSource:
    """Where a series comes from: its files, its UID, and how to load it again (folder or 'dicomdb')."""

    files: list[str]
    series_uid: str
    source: str
    description: str = ""


def folder_sources(folder: "str | Path") -> list[SeriesSource]:
    """Every CT series under ``folder`` (searched recursively)."""
    from PETriageLib.dicom_series import scan_series

    found = scan_series(folder)
    return [SeriesSource([str(f) for f in s.files], s.uid, str(folder), s.description)
            for s in found if (s.modality or "CT").upper() == "CT"]


def database_sources() -> list[SeriesSource]:
    """Inside Slicer: every CT series of slicer.dicomDatabase."""
    db = slicer.dicomDatabase
    out = []
    for patient in db.patients():
        for study in db.studiesForPatient(patient):
            for series in db.seriesForStudy(study):
                files = db.filesForSeries(series)
                if files and db.fileValue(files[0], "0008,0060").upper() == "CT":
                    out.append(SeriesSource(list(files), series, DATABASE))
    return out


def screen(sources: Sequence[SeriesSource], cascade: Any,
           progress: Callable[[int, int, str], None] | None = None, cancel: Any = None) -> list[dict]:
    """Triage each series; failures become rows with their reason. Returns rows ranked by PE score."""
    from PETriageLib.cascade import Cancelled, is_cancelled
    from PETriageLib.dicom_series import load_series
    from PETriageLib.report import worklist_row, write_worklist

    entries = []
    for n, src in enumerate(sources):
        if is_cancelled(cancel):
            raise Cancelled(f"screening cancelled after {n} of {len(sources)} series")
        if progress:
            progress(n, len(sources), f"series {n + 1}/{len(sources)}")
        try:
            result = cascade.run(load_series(src.files, series_uid=src.series_uid), cancel=cancel)
            row = worklist_row(result, "")
        except Cancelled:
            raise
        except Exception as exc:  # one bad series must not stop the worklist
            log.warning("series %s: %s", src.series_uid, exc)
            row = worklist_row(None, "", {"series_uid": src.series_uid, "num_slices": len(src.files),
                                          "series_description": src.description}, reason=str(exc))
        row["source"] = src.source
        entries.append(row)
    if progress:
        progress(len(sources), len(sources), "done")
    with tempfile.TemporaryDirectory() as tmp:  # reuse the library's ranking; the CSV is a by-product
        return write_worklist(entries, Path(tmp) / "worklist.csv")


def worklist_table(rows: Sequence[dict], scene: Any = None, name: str = "PETriage worklist") -> Any:
    """A table node with one ranked row per series."""
    scene = scene or slicer.mrmlScene
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    for col, kind in COLUMNS.items():
        add_column(node.GetTable(), col, [r.get(col) for r in rows], kind)
    node.SetAttribute("PETriage.worklist", "1")
    node.Modified()
    return node


def screen_folder(folder: "str | Path", cascade: Any, scene: Any = None,
                  progress: Callable[[int, int, str], None] | None = None, cancel: Any = None) -> Any:
    """Screen every CT series under ``folder``; return the worklist table node."""
    return worklist_table(screen(folder_sources(folder), cascade, progress, cancel), scene)


def screen_database(cascade: Any, progress: Callable[[int, int, str], None] | None = None,
                    cancel: Any = None) -> Any:
    """Inside Slicer: screen every CT series of the DICOM database."""
    return worklist_table(screen(database_sources(), cascade, progress, cancel))


def load_row(table: Any, row: int) -> Any:
    """Load the series of worklist row ``row`` into the table's scene; return its volume node."""
    from PETriageSlicer.loading import load_dicom_folder, load_from_dicom_database

    t = table.GetTable()
    uid = t.GetValueByName(row, "series_uid").ToString()
    source = t.GetValueByName(row, "source").ToString()
    if source == DATABASE:
        return load_from_dicom_database(uid)
    return load_dicom_folder(source, series_uid=uid, scene=table.GetScene())
