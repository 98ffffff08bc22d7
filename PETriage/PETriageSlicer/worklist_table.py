"""Screen many series (a folder, or every CT series of Slicer's DICOM database) into a ranked worklist.

Series are triaged straight from their files (no nodes are made) by PETriageLib's screening
loop, ranked in memory by its worklist rule, and listed in a table node; any row can then be loaded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import slicer

from PETriageLib.ingest.limits import modality_problem
from PETriageLib.screening.many_series import SeriesSource
from PETriageLib.triage.worklist import WorklistEntry
from PETriageSlicer.results import add_column
from PETriageSlicer.table_rows import show_as_panel_table

log = logging.getLogger(__name__)

DATABASE = "dicomdb"  # 'source' of rows that come from slicer.dicomDatabase
COLUMNS = {"rank": "int", "verdict": "str", "pe_score": "float", "disease_score": "float",
           "max_pe_slice": "float", "patient_id": "str", "study_date": "str", "series_uid": "str",
           "series_description": "str", "num_slices": "float", "reason": "str", "source": "str"}


def ct_folder_sources(folder: "str | Path") -> list[SeriesSource]:
    """Every CT series under ``folder`` (searched recursively)."""
    from PETriageLib.screening.many_series import folder_sources

    return [s for s in folder_sources(folder) if modality_problem(s.modality) is None]


def database_sources() -> list[SeriesSource]:
    """Inside Slicer: every CT series of slicer.dicomDatabase."""
    db = slicer.dicomDatabase
    out = []
    for patient in db.patients():
        for study in db.studiesForPatient(patient):
            for series in db.seriesForStudy(study):
                files = db.filesForSeries(series)
                if files and modality_problem(db.fileValue(files[0], "0008,0060")) is None:
                    out.append(SeriesSource(list(files), series, modality="CT", source=DATABASE))
    return out


def screen(sources: Sequence[SeriesSource], cascade: Any,
           progress: Callable[[int, int, str], None] | None = None, cancel: Any = None) -> list[WorklistEntry]:
    """Triage each series (no Grad-CAM, no report files); failures become entries with their
    reason. Returns the entries ranked by PE score (PETriageLib's worklist rule, in memory)."""
    from PETriageLib.screening.many_series import screen_sources
    from PETriageLib.screening.one_series import ScreenOptions

    return screen_sources(sources, cascade, ScreenOptions(cam="none"), progress=progress, cancel=cancel)


def worklist_table(rows: Sequence[WorklistEntry], scene: Any = None, name: str = "PETriage worklist") -> Any:
    """A table node with one ranked row per series."""
    scene = scene or slicer.mrmlScene
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    for col, kind in COLUMNS.items():
        add_column(node.GetTable(), col, [getattr(r, col) for r in rows], kind)
    node.SetAttribute("PETriage.worklist", "1")
    show_as_panel_table(node)
    node.Modified()
    return node


def screen_folder(folder: "str | Path", cascade: Any, scene: Any = None,
                  progress: Callable[[int, int, str], None] | None = None, cancel: Any = None) -> Any:
    """Screen every CT series under ``folder``; return the worklist table node."""
    return worklist_table(screen(ct_folder_sources(folder), cascade, progress, cancel), scene)


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
