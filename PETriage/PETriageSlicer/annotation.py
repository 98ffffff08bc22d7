"""Per-slice labels (wnl / other / pe) set or corrected by a user, lesion segmentation, and
export as a training manifest in the phantom dataset format the trainer reads.

Export layout (``out_dir``): ``<patient>_<n>/series/`` (copied DICOM files),
``<patient>_<n>/labels.csv`` (slice_index, instance_uid, z, label, pe, consolidation, ggo, nodule,
effusion, emphysema, file), optional ``<patient>_<n>/mask.nrrd`` (the phantom's finding codes), and
``manifest.csv`` with one row per exported series (patient_id, series_dir, labels_csv, mask,
patient_label, contrast, findings, seed).
"""
from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import slicer

from PETriageLib.vocabulary import SLICE_LABELS
from PETriageSlicer.geometry import ijk_to_ras, set_ijk_to_ras
from PETriageSlicer.loading import SOURCE_FILES_ATTRIBUTE
from PETriageSlicer.results import INPUT_ROLE, add_column, results_table
from PETriageSlicer.table_rows import show_as_panel_table

log = logging.getLogger(__name__)

LABELS_ROLE = "PETriageLabels"
LABEL_COLUMNS = ["slice_index", "instance_uid", "z", "label", "pe", "consolidation", "ggo", "nodule",
                 "effusion", "emphysema", "file"]
MANIFEST_COLUMNS = ["patient_id", "series_dir", "labels_csv", "mask", "patient_label", "contrast", "findings", "seed"]
FLAGS = ["pe", "consolidation", "ggo", "nodule", "effusion", "emphysema"]  # phantom finding kinds
COLORS = {"pe": (0.9, 0.1, 0.1), "consolidation": (0.9, 0.6, 0.1), "ggo": (0.9, 0.9, 0.3),
          "nodule": (0.6, 0.3, 0.9), "effusion": (0.2, 0.6, 0.9), "emphysema": (0.3, 0.8, 0.4)}


def create_annotations(ct: Any, start_from_results: bool = True) -> Any:
    """A labels table for ``ct`` (one row per slice), pre-filled with the model's labels when there are results."""
    from PETriageSlicer.geometry import volume_from_node

    scene = ct.GetScene()
    num = ct.GetImageData().GetDimensions()[2]
    labels, source = ["wnl"] * num, ["default"] * num
    results = results_table(ct) if start_from_results else None
    if results is not None:
        t = results.GetTable()
        for r in range(t.GetNumberOfRows()):
            k, lab = t.GetValueByName(r, "index").ToInt(), t.GetValueByName(r, "label").ToString()
            if lab in SLICE_LABELS:
                labels[k], source[k] = lab, "model"
    vol = volume_from_node(ct)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{ct.GetName()} PETriage labels")
    add_column(node.GetTable(), "index", list(range(num)), "int")
    add_column(node.GetTable(), "z", list(vol.z_positions), "float")
    add_column(node.GetTable(), "instance_uid", list(vol.instance_uids), "str")
    add_column(node.GetTable(), "label", labels, "str")
    add_column(node.GetTable(), "source", source, "str")
    show_as_panel_table(node)  # labels change through set_labels, never by typing into the view
    node.SetNodeReferenceID(INPUT_ROLE, ct.GetID())
    ct.SetNodeReferenceID(LABELS_ROLE, node.GetID())
    return node


def set_labels(table: Any, slices: "int | Iterable[int]", label: str) -> None:
    """Set (or correct) the label of one slice index or several; marks them as the user's."""
    if label not in SLICE_LABELS:
        raise ValueError(f"label must be one of {SLICE_LABELS}, got {label!r}")
    idx = [slices] if isinstance(slices, (int, np.integer)) else list(slices)
    t = table.GetTable()
    for k in idx:
        if not 0 <= int(k) < t.GetNumberOfRows():
            raise IndexError(f"slice {k} is outside {table.GetName()} (0..{t.GetNumberOfRows() - 1})")
        t.SetValueByName(int(k), "label", label)
        t.SetValueByName(int(k), "source", "user")
    t.Modified()
    table.Modified()


def labels_of(table: Any) -> list[str]:
    t = table.GetTable()
    return [t.GetValueByName(r, "label").ToString() for r in range(t.GetNumberOfRows())]


def create_lesion_segmentation(ct: Any) -> Any:
    """An empty segmentation on the CT's grid with one segment per finding kind (pe, consolidation, ...)."""
    seg = ct.GetScene().AddNewNodeByClass("vtkMRMLSegmentationNode", f"{ct.GetName()} PETriage lesions")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    for name in FLAGS:
        seg.GetSegmentation().AddEmptySegment(name, name, COLORS[name])
    seg.SetNodeReferenceID(INPUT_ROLE, ct.GetID())
    return seg


def _labelmap_on_ct(ct: Any, array: "np.ndarray | None" = None) -> Any:
    """A temporary labelmap node on the CT's grid (filled with ``array`` when given)."""
    lm = ct.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__petriage_temp__")
    if array is not None:
        slicer.util.updateVolumeFromArray(lm, np.ascontiguousarray(array, dtype=np.uint8))
        set_ijk_to_ras(lm, ijk_to_ras(ct))
    return lm


def set_segment_from_array(seg: Any, name: str, array: np.ndarray, ct: Any) -> None:
    """Replace segment ``name`` with the non-zero voxels of a (k, j, i) array on the CT's grid."""
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    lm = _labelmap_on_ct(ct, (np.asarray(array) > 0).astype(np.uint8))
    try:
        image = logic.CreateOrientedImageDataFromVolumeNode(lm)
        if not logic.SetBinaryLabelmapToSegment(image, seg, name, logic.MODE_REPLACE):
            raise ValueError(f"could not set segment {name!r} of {seg.GetName()}")
    finally:
        ct.GetScene().RemoveNode(lm)


def lesion_mask(seg: Any, ct: Any) -> np.ndarray:
    """uint8 (k, j, i) mask on the CT's grid with the phantom's finding codes (pe = 1, ...), 0 elsewhere."""
    dims = ct.GetImageData().GetDimensions()
    mask = np.zeros((dims[2], dims[1], dims[0]), np.uint8)
    for name in FLAGS:
        if seg.GetSegmentation().GetSegment(name) is None:
            continue
        mask[segment_array(seg, name, ct) > 0] = _code(name)
    return mask


def segment_array(seg: Any, segment_id: str, ct: Any) -> np.ndarray:
    """Segment ``segment_id`` exported as a labelmap on the CT's grid: a (k, j, i) array, non-zero inside."""
    import vtk

    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    lm = _labelmap_on_ct(ct)
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(seg, ids, lm, ct):
            raise ValueError(f"could not export segment {segment_id!r} of {seg.GetName()}")
        return slicer.util.arrayFromVolume(lm).copy()
    finally:
        ct.GetScene().RemoveNode(lm)


def _patient_label(labels: list[str]) -> str:
    return "pe" if "pe" in labels else ("other" if "other" in labels else "wnl")


def _write_labels(path: Path, vol: Any, labels: list[str], files: list[Path], mask: np.ndarray | None) -> None:
    """Phantom-style labels; finding flags come from the painted mask (pe also from the label)."""
    from PETriageLib.ingest.scan import read_instance
    from PETriageLib.phantom import FINDING_CODES

    # Files without SOPInstanceUID got surrogate ids built from their original names; the copies are
    # renamed, so leave those ids out and let the trainer match by file name.
    has_uid = [bool(read_instance(f).sop_uid) for f in files]

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LABEL_COLUMNS)
        w.writeheader()
        for k, lab in enumerate(labels):
            uid = vol.instance_uids[k] if has_uid[k] else ""
            flags = {n: int(mask is not None and bool((mask[k] == FINDING_CODES[n]).any())) for n in FLAGS}
            flags["pe"] = int(flags["pe"] or lab == "pe")
            w.writerow({"slice_index": k, "instance_uid": uid, "z": f"{vol.z_positions[k]:.3f}", "label": lab,
                        **flags, "file": files[k].name})


def _write_mask(path: Path, mask: np.ndarray, vol: Any) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(mask)
    img.SetSpacing(vol.spacing)
    img.SetOrigin(vol.origin)
    img.SetDirection(np.asarray(vol.direction, float).ravel().tolist())
    sitk.WriteImage(img, str(path), useCompression=True)


def _upsert_manifest(path: Path, row: dict) -> None:
    rows = []
    if path.is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("series_dir") != row["series_dir"]]
    rows.append(row)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def export_training_manifest(ct: Any, labels_table: Any, out_dir: "str | Path", segmentation: Any = None,
                             patient_id: str | None = None) -> Path:
    """Copy the CT's DICOM files, write its labels (and mask) and add it to ``out_dir``/manifest.csv."""
    from PETriageSlicer.geometry import volume_from_node

    files = [Path(f) for f in (ct.GetAttribute(SOURCE_FILES_ATTRIBUTE) or "").split("|") if f]
    if not files:
        raise ValueError(f"{ct.GetName()}: no source DICOM files are known (load it with PETriageSlicer.loading)")
    vol = volume_from_node(ct)
    labels = labels_of(labels_table)
    if len(labels) != vol.num_slices or len(files) != vol.num_slices:
        raise ValueError(f"{ct.GetName()}: {vol.num_slices} slices but {len(labels)} labels and {len(files)} files")
    pid = patient_id or vol.metadata.get("patient_id") or "anonymous"
    out = Path(out_dir)
    n = 1
    while (out / f"{pid}_{n}").exists() and not _same_series(out / f"{pid}_{n}", vol):
        n += 1
    case = out / f"{pid}_{n}"
    series_dir = case / "series"
    series_dir.mkdir(parents=True, exist_ok=True)
    copied = [series_dir / f"{k:04d}_{f.name}" for k, f in enumerate(files)]
    for src, dst in zip(files, copied):
        shutil.copyfile(src, dst)
    mask = lesion_mask(segmentation, ct) if segmentation is not None else None
    _write_labels(case / "labels.csv", vol, labels, copied, mask)
    (case / "series_uid.txt").write_text(vol.metadata.get("series_uid", ""))
    mask_rel = ""
    if mask is not None:
        _write_mask(case / "mask.nrrd", mask, vol)
        mask_rel = f"{case.name}/mask.nrrd"
    findings = [n for n in FLAGS if n == "pe" and "pe" in labels or mask is not None and (mask == _code(n)).any()]
    if "other" in labels and not set(findings) - {"pe"}:
        findings.append("other")
    _upsert_manifest(out / "manifest.csv", {
        "patient_id": pid, "series_dir": f"{case.name}/series", "labels_csv": f"{case.name}/labels.csv",
        "mask": mask_rel, "patient_label": _patient_label(labels), "contrast": "", "findings": ";".join(findings),
        "seed": ""})
    log.info("exported %s (%d slices, patient label %s) to %s", ct.GetName(), len(labels),
             _patient_label(labels), out)
    return out / "manifest.csv"


def _code(name: str) -> int:
    from PETriageLib.phantom import FINDING_CODES

    return FINDING_CODES[name]


def _same_series(case: Path, vol: Any) -> bool:
    uid_file = case / "series_uid.txt"
    return uid_file.is_file() and uid_file.read_text() == vol.metadata.get("series_uid", "")
