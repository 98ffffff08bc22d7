"""DICOM series -> scalar volume node with Slicer's geometry and subject hierarchy links.

Files are ordered by PETriageLib's position sort (never by name) and read by Slicer's own
archetype reader, as Slicer's DICOM module does; the node gets the ``DICOM.instanceUIDs``
attribute and patient / study / series items carrying their DICOM UIDs.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import slicer

from PETriageLib.errors import SeriesError
from PETriageLib.progress import Progress

log = logging.getLogger(__name__)

SH = slicer.vtkMRMLSubjectHierarchyConstants
SOURCE_FILES_ATTRIBUTE = "PETriage.sourceFiles"  # '|'-joined file list, to export annotations
# What PETriageLib's own reader would refuse or need, kept for volume_from_node (JSON lists):
DEFECTS_ATTRIBUTE = "PETriage.ingestDefects"  # gantry tilt, unreadable files of the input
POSITIONS_ATTRIBUTE = "PETriage.slicePositions"  # real mm along the normal: a gap stays visible


def series_name(meta: dict[str, str]) -> str:
    """Slicer's DICOM naming: '<number>: <description>', falling back to the patient."""
    desc = meta.get("series_description") or meta.get("modality") or "CT"
    num = meta.get("series_number")
    return f"{num}: {desc}" if num else f"{meta.get('patient_id') or 'Anonymous'} {desc}"


def pick_series(path_or_files: "str | Path | Sequence[str]", series_uid: str | None = None,
                progress: Progress | None = None):
    """The series to load: the one with ``series_uid``, else the CT series with most slices."""
    from PETriageLib.ingest.limits import modality_problem
    from PETriageLib.ingest.load import scan_series

    found = scan_series(path_or_files, progress=progress)
    if series_uid is not None:
        match = [s for s in found if s.uid == series_uid]
        if not match:
            raise SeriesError(f"{path_or_files}: no series with UID {series_uid} (found {[s.uid for s in found]})")
        return match[0]
    cts = [s for s in found if modality_problem(s.modality) is None]
    if not cts:
        raise SeriesError(f"{path_or_files}: no CT series found ({len(found)} other series)")
    if len(cts) > 1:
        log.info("%s holds %d CT series; loading the largest", path_or_files, len(cts))
    return max(cts, key=lambda s: s.num_slices)


def load_dicom_folder(path_or_files: "str | Path | Sequence[str]", series_uid: str | None = None,
                      scene: "slicer.vtkMRMLScene | None" = None,
                      progress: Progress | None = None) -> "slicer.vtkMRMLScalarVolumeNode":
    """Load one CT series from a folder (or file list) into ``scene`` (default slicer.mrmlScene)."""
    import vtk

    scene = scene or slicer.mrmlScene
    from PETriageLib.ingest.load import series_metadata

    info = pick_series(path_or_files, series_uid, progress)
    header = series_metadata(info.instances[0], info.uid, info.num_slices)
    meta = {k: "" if v is None else str(v) for k, v in header.items()}
    files = vtk.vtkStringArray()
    for f in info.files:
        files.InsertNextValue(str(f))
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLScene(scene)
    try:
        from PETriageSlicer.scene import application_logic

        volumes.SetMRMLApplicationLogic(application_logic(scene))
    except RuntimeError:
        pass  # a bare scene: the volume still loads, only without default color settings
    node = volumes.AddArchetypeScalarVolume(str(info.files[0]), series_name(meta), 0, files)
    if node is None:
        raise SeriesError(f"{path_or_files}: Slicer could not read series {info.uid}")
    uids = [inst.sop_uid for inst in info.instances]
    node.SetAttribute("DICOM.instanceUIDs", " ".join(u for u in uids if u))
    node.SetAttribute(SOURCE_FILES_ATTRIBUTE, "|".join(str(f) for f in info.files))
    attach_header_findings(node, info)
    for w in info.warnings:
        log.warning("%s: %s", path_or_files, w)
    place_in_hierarchy(node, meta)
    return node


def attach_header_findings(node: "slicer.vtkMRMLNode", info) -> None:
    """Keep on the node what the headers say and Slicer's reader hides (its volume is evenly spaced
    and unsheared whatever the files say), so the gate sees what ``petriage triage`` sees."""
    from PETriageLib.ingest.load import header_findings

    found = header_findings(info)
    node.SetAttribute(DEFECTS_ATTRIBUTE, json.dumps(found.defects))
    node.SetAttribute(POSITIONS_ATTRIBUTE, json.dumps(found.positions))
    for defect in found.defects:
        log.warning("series %s will not be triaged: %s", info.uid, defect)


def place_in_hierarchy(node: "slicer.vtkMRMLNode", meta: dict[str, str]) -> int:
    """Put ``node`` under patient -> study items with their DICOM UIDs; return the series item."""
    sh = node.GetScene().GetSubjectHierarchyNode()
    scene_item = sh.GetSceneItemID()
    patient_uid = meta.get("patient_id") or "Anonymous"
    patient = sh.GetItemByUID(SH.GetDICOMUIDName(), patient_uid)
    if not patient:
        patient = sh.CreateSubjectItem(scene_item, meta.get("patient_name") or patient_uid)
        sh.SetItemUID(patient, SH.GetDICOMUIDName(), patient_uid)
        for attr, key in ((SH.GetDICOMPatientIDAttributeName(), "patient_id"),
                          (SH.GetDICOMPatientNameAttributeName(), "patient_name")):
            sh.SetItemAttribute(patient, attr, meta.get(key, ""))
    study_uid = meta.get("study_uid") or f"{patient_uid}.study"
    study = sh.GetItemByUID(SH.GetDICOMUIDName(), study_uid)
    if not study:
        name = meta.get("study_description") or f"Study {meta.get('study_date', '')}".strip()
        study = sh.CreateStudyItem(patient, name)
        sh.SetItemUID(study, SH.GetDICOMUIDName(), study_uid)
        for attr, key in ((SH.GetDICOMStudyInstanceUIDAttributeName(), "study_uid"),
                          (SH.GetDICOMStudyDateAttributeName(), "study_date"),
                          (SH.GetDICOMStudyTimeAttributeName(), "study_time"),
                          (SH.GetDICOMStudyDescriptionAttributeName(), "study_description")):
            sh.SetItemAttribute(study, attr, meta.get(key, ""))
    series = sh.GetItemByDataNode(node) or sh.CreateItem(study, node)
    sh.SetItemParent(series, study)
    sh.SetItemUID(series, SH.GetDICOMUIDName(), meta["series_uid"])
    sh.SetItemAttribute(series, SH.GetDICOMSeriesModalityAttributeName(), meta.get("modality", ""))
    sh.SetItemAttribute(series, SH.GetDICOMSeriesNumberAttributeName(), meta.get("series_number", ""))
    return series


def load_from_dicom_database(series_uid: str) -> "slicer.vtkMRMLScalarVolumeNode":
    """Inside the Slicer application: load a series of slicer.dicomDatabase by its UID."""
    from DICOMLib import DICOMUtils  # only exists inside Slicer

    node_ids = DICOMUtils.loadSeriesByUID([series_uid])
    nodes = [slicer.mrmlScene.GetNodeByID(i) for i in node_ids]
    volumes = [n for n in nodes if n is not None and n.IsA("vtkMRMLScalarVolumeNode")]
    if not volumes:
        raise SeriesError(f"DICOM database: series {series_uid} did not load as a scalar volume")
    files = slicer.dicomDatabase.filesForSeries(series_uid)  # database order, not slice order
    info = pick_series(list(files), series_uid)
    volumes[0].SetAttribute(SOURCE_FILES_ATTRIBUTE, "|".join(str(f) for f in info.files))
    attach_header_findings(volumes[0], info)
    return volumes[0]


def files_in_slice_order(files: Sequence[str], series_uid: "str | None" = None) -> list[str]:
    """A series' files in PETriageLib's position order (the order the node's slices have)."""
    return [str(f) for f in pick_series(list(files), series_uid).files]
