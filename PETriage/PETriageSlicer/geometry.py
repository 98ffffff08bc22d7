"""Scalar volume node <-> PETriageLib CTVolume (LPS geometry), and per-slice positions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import slicer

from PETriageLib.ingest.load import surrogate_instance_uid
from PETriageLib.ingest.pixels import implausible_pixels
from PETriageLib.ingest.volume import AIR_HU, LPS_TO_RAS, CTVolume

from PETriageSlicer.loading import DEFECTS_ATTRIBUTE, POSITIONS_ATTRIBUTE, SOURCE_FILES_ATTRIBUTE

SH = slicer.vtkMRMLSubjectHierarchyConstants


def ijk_to_ras(node: "slicer.vtkMRMLVolumeNode") -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m).copy()


def set_ijk_to_ras(node: "slicer.vtkMRMLVolumeNode", matrix: np.ndarray) -> None:
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(np.asarray(matrix, float)))


def slice_center_ras(node: "slicer.vtkMRMLVolumeNode", k: int) -> np.ndarray:
    """RAS position of the centre of slice ``k`` (array index k of the (k, j, i) volume)."""
    dims = node.GetImageData().GetDimensions()
    ijk = np.array([(dims[0] - 1) / 2.0, (dims[1] - 1) / 2.0, float(k), 1.0])
    return (ijk_to_ras(node) @ ijk)[:3]


def hierarchy_metadata(node: "slicer.vtkMRMLNode") -> dict[str, str]:
    """Patient / study / series identifiers from the node's subject hierarchy items."""
    sh = node.GetScene().GetSubjectHierarchyNode()
    series = sh.GetItemByDataNode(node)
    study = sh.GetItemAncestorAtLevel(series, SH.GetDICOMLevelStudy()) if series else 0
    patient = sh.GetItemAncestorAtLevel(series, SH.GetDICOMLevelPatient()) if series else 0
    uid = SH.GetDICOMUIDName()
    meta = {
        "series_uid": sh.GetItemUID(series, uid) if series else "",
        "study_uid": sh.GetItemUID(study, uid) if study else "",
        "patient_id": sh.GetItemAttribute(patient, SH.GetDICOMPatientIDAttributeName()) if patient else "",
        "patient_name": sh.GetItemAttribute(patient, SH.GetDICOMPatientNameAttributeName()) if patient else "",
        "study_date": sh.GetItemAttribute(study, SH.GetDICOMStudyDateAttributeName()) if study else "",
        "study_description": sh.GetItemAttribute(study, SH.GetDICOMStudyDescriptionAttributeName()) if study else "",
        "modality": sh.GetItemAttribute(series, SH.GetDICOMSeriesModalityAttributeName()) if series else "",
        "series_description": node.GetName(),
    }
    return {k: v for k, v in meta.items() if v}


def instance_uids(node: "slicer.vtkMRMLVolumeNode", z_positions: "list[float]") -> list[str]:
    """The node's DICOM.instanceUIDs when there is one per slice, else the library's stable surrogate UIDs."""
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    if len(uids) == len(z_positions):
        return uids
    series_key = f"{node.GetName()}|{node.GetID()}"
    return [surrogate_instance_uid(series_key, f"slice{k:04d}", z) for k, z in enumerate(z_positions)]


def _json_attribute(node: "slicer.vtkMRMLNode", name: str) -> list:
    try:
        value = json.loads(node.GetAttribute(name) or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def slice_names(node: "slicer.vtkMRMLVolumeNode", count: int) -> list[str]:
    """Each slice's file name when the node came from PETriage's loader, else 'slice k'."""
    files = [f for f in (node.GetAttribute(SOURCE_FILES_ATTRIBUTE) or "").split("|") if f]
    return [Path(f).name for f in files] if len(files) == count else [f"slice {k}" for k in range(count)]


def header_positions(node: "slicer.vtkMRMLVolumeNode", computed: np.ndarray) -> np.ndarray:
    """The files' real slice positions kept at loading (where a lost slice leaves a gap) when they
    belong to this node's grid (same count, same first slice); else the node's even spacing."""
    stored = np.asarray(_json_attribute(node, POSITIONS_ATTRIBUTE), float)
    if stored.shape == computed.shape and stored.size and abs(stored[0] - computed[0]) < 0.01:
        return stored
    return computed


def ingest_defects(node: "slicer.vtkMRMLVolumeNode", hu: np.ndarray) -> list[str]:
    """Defects the gate refuses: those the headers showed at loading, and implausible voxels (the
    same pixel checks as PETriageLib's reader, on whatever Slicer's reader decoded)."""
    kept = [str(d) for d in _json_attribute(node, DEFECTS_ATTRIBUTE)]
    return kept + implausible_pixels(hu, slice_names(node, hu.shape[0]))


def volume_from_node(node: "slicer.vtkMRMLScalarVolumeNode") -> CTVolume:
    """A CTVolume (HU clipped at -1024, LPS geometry) holding a copy of the node's voxels, with
    the defects that make ``petriage triage`` refuse the same files."""
    if node is None or node.GetImageData() is None:
        raise ValueError("the input volume node has no image data")
    hu = slicer.util.arrayFromVolume(node)
    defects = ingest_defects(node, hu)
    fits_int16 = np.issubdtype(hu.dtype, np.integer) and hu.size and int(hu.max()) <= 32767
    hu = np.maximum(hu, AIR_HU).astype(np.int16 if fits_int16 else np.float32)
    lps = ijk_to_ras(node)
    lps[:3, :] = LPS_TO_RAS @ lps[:3, :]  # the flip is its own inverse
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    origin = lps[:3, 3]
    normal = direction[:, 2]
    z = header_positions(node, np.array([float(np.dot(origin + k * spacing[2] * normal, normal))
                                         for k in range(hu.shape[0])]))
    meta = hierarchy_metadata(node)
    meta.setdefault("modality", "CT")
    meta["source_node"] = node.GetID()
    return CTVolume(hu=hu, spacing=tuple(float(s) for s in spacing), origin=tuple(float(o) for o in origin),
                    direction=direction, z_positions=z, instance_uids=instance_uids(node, list(z)),
                    metadata=meta, warnings=list(defects), defects=defects)
