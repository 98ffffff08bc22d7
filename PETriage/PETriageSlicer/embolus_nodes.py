"""A report folder's embolus mask and probability as MRML nodes under the CT's study, and the clot
volume in the results table (issue #24); a lesion model's other classes as more segments of the
same node (one segment per finding class), each checked against report.json the same way.

The clot volume shown is measured in the scene (segment voxels x the CT's voxel volume), not copied
from report.json: it must agree with the report's ``volume_ml`` to 1e-6 relative, so a mask that
lost voxels on the way in (another grid, a resampling) is refused instead of shown with a wrong number.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from PETriageLib.ingest.volume import LPS_TO_RAS
from PETriageLib.vocabulary import LESION_TITLES
from PETriageSlicer.annotation import segment_array, set_segment_from_array
from PETriageSlicer.embolus_report import EmbolusBlock, other_lesion_blocks, read_embolus_block
from PETriageSlicer.geometry import ijk_to_ras
from PETriageSlicer.results import CLOT_ATTRIBUTES, INPUT_ROLE, add_column, add_heatmap, place_results
from PETriageSlicer.settings import DisplayOptions

log = logging.getLogger(__name__)

EMBOLUS_SEGMENT = "Embolus"
EMBOLUS_COLOR = (0.85, 0.1, 0.1)  # red, as Slicer's generic anatomy colours show clots and haemorrhage
CLOT_COLUMN = "clot_ml"  # per-slice clot volume in the results table
VOLUME_TOLERANCE = 1e-6  # relative, scene volume vs report.json
GEOMETRY_TOLERANCE_MM = 1e-3
NO_CLOT = "No clot segmented"
# a lesion model's other classes: segment name (the class's title) and colour (yellow, apart from
# the clot's red), and the node attribute that holds its volume
LESION_SEGMENTS = {"other": (LESION_TITLES["other"].capitalize(), (0.95, 0.8, 0.2))}
LESION_ATTRIBUTES = {"other": "PETriage.otherDiseaseMl"}


@dataclass
class EmbolusNodes:
    """What one report folder's embolus block put into the scene (nodes None when no segmentation ran)."""

    segmentation: Any = None
    probability: Any = None
    volume_ml: float | None = None  # None: no segmentation ran
    slices: list[int] = field(default_factory=list)
    summary: str = NO_CLOT
    other_ml: dict[str, float] = field(default_factory=dict)  # other lesion classes the model segmented, mL

    @property
    def lines(self) -> list[str]:
        """What the panel shows under the verdict: the clot line, then one per other lesion class."""
        return [self.summary] + [f"{LESION_SEGMENTS[c][0]} (segmented): {ml:.1f} mL" for c, ml in self.other_ml.items()]


class EmbolusRefused(ValueError):
    """The report folder's mask cannot be shown on this CT (the reason says why); nothing was added."""


def read_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(k, j, i) voxels and the IJK -> RAS matrix of an NRRD/NIfTI file written in LPS."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), float)
    lps[:3, 3] = image.GetOrigin()
    lps[:3, :] = LPS_TO_RAS @ lps[:3, :]
    return sitk.GetArrayFromImage(image), lps


def check_same_grid(ct: Any, array: np.ndarray, matrix: np.ndarray, what: str) -> None:
    """Refuse (EmbolusRefused) a volume whose size, spacing, origin or direction differ from the CT's."""
    dims = ct.GetImageData().GetDimensions()
    if tuple(array.shape) != (dims[2], dims[1], dims[0]):
        raise EmbolusRefused(f"{what}: size {array.shape[::-1]} (i, j, k) differs from the CT's {tuple(dims)}")
    ct_matrix = ijk_to_ras(ct)
    if not np.allclose(matrix, ct_matrix, atol=GEOMETRY_TOLERANCE_MM, rtol=0):
        worst = float(np.abs(matrix - ct_matrix).max())
        raise EmbolusRefused(f"{what}: spacing, origin or direction differ from the CT's "
                             f"(IJK-to-RAS differs by up to {worst:.4g} mm)")


def clot_summary(volume_ml: float | None, slices: list[int]) -> str:
    """summary.md's clot line (the contract's wording)."""
    if not volume_ml or not slices:
        return NO_CLOT
    return f"Clot volume: {volume_ml:.1f} mL on slices {slices[0]}-{slices[-1]} ({len(slices)} slices)"


def voxel_volume_ml(ct: Any) -> float:
    return float(np.prod(ct.GetSpacing())) / 1000.0


def read_mask(block: EmbolusBlock, ct: Any) -> np.ndarray:
    mask, matrix = read_volume(block.mask_path)
    check_same_grid(ct, mask, matrix, str(block.mask_path))
    values = np.unique(mask)
    if not set(values.tolist()) <= {0, 1}:
        raise EmbolusRefused(f"{block.mask_path}: a mask holds 0 and 1 only, this one {values[:6].tolist()}")
    return mask.astype(np.uint8)


def add_embolus_nodes(ct: Any, report_dir: "str | Path", table: Any = None,
                      options: DisplayOptions | None = None) -> EmbolusNodes:
    """The embolus segmentation and probability of ``report_dir`` for ``ct``, and the clot columns in ``table``.

    Raises EmbolusRefused (nothing added) for a mask on another grid or a volume that disagrees with
    report.json; a folder whose report says no segmentation ran adds no node and marks the table.
    """
    block = read_embolus_block(report_dir)
    if block is None:
        found = EmbolusNodes()
        mark_table(table, ct, found, [None] * _rows(table))
        return found
    mask = read_mask(block, ct)
    probability = None
    if block.probability_path is not None:
        probability, matrix = read_volume(block.probability_path)
        check_same_grid(ct, probability, matrix, str(block.probability_path))
    others = other_lesion_blocks(report_dir, block)
    unknown = sorted(set(others) - set(LESION_SEGMENTS))
    if unknown:
        raise EmbolusRefused(f"{report_dir}: report.json has lesion class(es) {unknown} that this module does not "
                             f"show (it knows {sorted(LESION_SEGMENTS)})")
    other_masks = {lesion: read_mask(other, ct) for lesion, other in others.items()}
    seg = add_segmentation(ct, mask)
    other_ml = {}
    try:
        measured, volume, slices = checked_segment(seg, EMBOLUS_SEGMENT, block, ct, report_dir)
        for lesion, other in others.items():
            name, color = LESION_SEGMENTS[lesion]
            seg.GetSegmentation().AddEmptySegment(name, name, color)
            set_segment_from_array(seg, name, other_masks[lesion], ct)
            other_ml[lesion] = checked_segment(seg, name, other, ct, report_dir)[1]
    except Exception:
        ct.GetScene().RemoveNode(seg)
        raise
    prob_node = None
    if probability is not None:
        prob_node = add_heatmap(ct.GetScene(), ct, f"{ct.GetName()} embolus probability",
                                probability.astype(np.float32), options or DisplayOptions(threshold=block.threshold))
    found = EmbolusNodes(seg, prob_node, volume, slices, clot_summary(volume, slices), other_ml)
    per_slice = (measured.sum(axis=(1, 2)) * voxel_volume_ml(ct)).tolist()
    mark_table(table, ct, found, per_slice)
    place_beside_results(ct, table, [n for n in (seg, prob_node) if n is not None])
    for node in (seg, prob_node):
        if node is not None:
            node.SetNodeReferenceID(INPUT_ROLE, ct.GetID())
            node.SetAttribute("PETriage.embolusModel", block.model)
            node.SetAttribute("PETriage.embolusPathway", block.pathway)
    for lesion, ml in other_ml.items():
        seg.SetAttribute(LESION_ATTRIBUTES[lesion], repr(ml))
    log.info("%s: %s (model %s, %s pathway)", ct.GetName(), found.summary, block.model, block.pathway)
    return found


def checked_segment(seg: Any, name: str, block: EmbolusBlock, ct: Any, report_dir: "str | Path"
                    ) -> tuple[np.ndarray, float, list[int]]:
    """(voxels, mL, slices) of segment ``name`` as the scene holds it, refused (EmbolusRefused)
    where its volume or slices disagree with ``block`` (report.json)."""
    measured = segment_array(seg, name, ct) > 0
    volume = float(measured.sum()) * voxel_volume_ml(ct)
    if abs(volume - block.volume_ml) > VOLUME_TOLERANCE * max(abs(block.volume_ml), 1e-12):
        raise EmbolusRefused(f"{report_dir}: the {name} segment holds {volume:.6f} mL but report.json says "
                             f"{block.volume_ml:.6f} mL")
    slices = [int(k) for k in np.flatnonzero(measured.any(axis=(1, 2)))]
    if slices != block.slices:
        raise EmbolusRefused(f"{report_dir}: the {name} segment spans slices {_span(slices)} but report.json "
                             f"says {_span(block.slices)}")
    return measured, volume, slices


def add_segmentation(ct: Any, mask: np.ndarray) -> Any:
    """A segmentation node on the CT's grid with an "Embolus" segment filled from ``mask``."""
    seg = ct.GetScene().AddNewNodeByClass("vtkMRMLSegmentationNode", f"{ct.GetName()} PETriage embolus")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    seg.GetSegmentation().AddEmptySegment(EMBOLUS_SEGMENT, EMBOLUS_SEGMENT, EMBOLUS_COLOR)
    set_segment_from_array(seg, EMBOLUS_SEGMENT, mask, ct)
    return seg


def mark_table(table: Any, ct: Any, found: EmbolusNodes, per_slice: list) -> None:
    """Per-slice ``clot_ml`` column (empty when no segmentation ran) and the totals as attributes."""
    values = ("" if found.volume_ml is None else repr(found.volume_ml), json.dumps(found.slices), found.summary)
    attrs = dict(zip(CLOT_ATTRIBUTES, values))
    if table is not None:
        t = table.GetTable()
        if t.GetColumnByName(CLOT_COLUMN) is not None:
            t.RemoveColumnByName(CLOT_COLUMN)
        index = [t.GetValueByName(r, "index").ToInt() for r in range(t.GetNumberOfRows())]
        add_column(t, CLOT_COLUMN, [per_slice[k] if 0 <= k < len(per_slice) else None for k in index], "float")
        table.Modified()
    for node in (ct, table, found.segmentation, found.probability):
        if node is not None:
            for key, value in attrs.items():
                node.SetAttribute(key, value)


def place_beside_results(ct: Any, table: Any, nodes: list) -> None:
    """Into the folder of the CT's results (under its study), so that a new run removes them too."""
    sh = ct.GetScene().GetSubjectHierarchyNode()
    folder = sh.GetItemParent(sh.GetItemByDataNode(table)) if table is not None else 0
    if not folder:
        place_results(ct, nodes, f"PETriage: {ct.GetName()} embolus")
        return
    for node in nodes:
        sh.SetItemParent(sh.GetItemByDataNode(node) or sh.CreateItem(folder, node), folder)


def _rows(table: Any) -> int:
    return 0 if table is None else table.GetNumberOfRows()


def _span(slices: list[int]) -> str:
    return f"{slices[0]}-{slices[-1]} ({len(slices)} slices)" if slices else "none"
