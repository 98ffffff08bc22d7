"""Triage results as MRML nodes: per-slice table, probability chart, Grad-CAM heatmap volumes.

Everything is named after the input series, linked to it by node references, carries the
patient verdict as node attributes, and sits in one folder under the input's study.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import slicer

from PETriageLib.reporting.slices_csv import SLICE_COLUMNS
from PETriageSlicer.geometry import ijk_to_ras, set_ijk_to_ras
from PETriageSlicer.scene import color_node_id, nodes_by_class
from PETriageSlicer.settings import DisplayOptions
from PETriageSlicer.table_rows import show_as_panel_table

log = logging.getLogger(__name__)

INPUT_ROLE = "PETriageInput"  # node reference from every result node to the CT it belongs to
TABLE_ROLE = "PETriageTable"  # from the CT to its latest results table
CLOT_ATTRIBUTES = ("PETriage.clotVolumeMl", "PETriage.clotSlices", "PETriage.clotSummary")  # embolus_nodes.py
VERDICT_KEYS = ("verdict", "reason", "pe_score", "disease_score", "max_pe_slice", "rule", "patient_probability")
COLUMNS = tuple(SLICE_COLUMNS)  # the slice table's columns are slices.csv's


@dataclass
class ResultNodes:
    table: Any
    chart: Any
    heatmaps: dict[str, Any] = field(default_factory=dict)
    folder_item: int = 0
    embolus: Any = None  # embolus_nodes.EmbolusNodes when a report folder was loaded


def verdict_attributes(verdict: dict[str, Any]) -> dict[str, str]:
    out = {f"PETriage.{k}": "" if verdict.get(k) is None else str(verdict.get(k)) for k in VERDICT_KEYS}
    out["PETriage.result"] = json.dumps(verdict, default=str)
    return out


def add_column(table: Any, name: str, values: list, kind: str) -> None:
    import vtk

    arr = {"int": vtk.vtkIntArray, "float": vtk.vtkDoubleArray, "str": vtk.vtkStringArray}[kind]()
    arr.SetName(name)
    for v in values:
        if kind == "str":
            arr.InsertNextValue("" if v is None else str(v))
        elif kind == "float":
            arr.InsertNextValue(math.nan if v is None else float(v))
        else:
            arr.InsertNextValue(int(v))
    table.AddColumn(arr)


def add_table(scene: Any, name: str, rows: list) -> Any:
    """Table node with one row per slice in index (anatomical, feet -> head) order."""
    rows = sorted(rows, key=lambda r: r.index)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    kinds = {"index": "int", "z": "float", "instance_uid": "str", "has_lung": "int", "analysable": "int",
             "p_disease": "float", "p_pe": "float", "label": "str"}
    for col in COLUMNS:
        add_column(table, col, [getattr(r, col) for r in rows], kinds[col])
    show_as_panel_table(node)
    node.Modified()
    return node


def add_chart(scene: Any, name: str, table: Any) -> Any:
    """Plot chart of p_disease and p_pe against z (mm) from the table's columns."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} chart")
    chart.SetTitle(f"PETriage: {name}")
    chart.SetXAxisTitle("z (mm)")
    chart.SetYAxisTitle("probability")
    chart.SetYAxisRangeAuto(False)  # else vtkMRMLPlotChartNode ignores the range (YAxisRangeAuto is on by default)
    chart.SetYAxisRange(0.0, 1.0)
    for column, color in (("p_disease", (0.2, 0.4, 0.9)), ("p_pe", (0.9, 0.2, 0.1))):
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {column}")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName("z")
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetColor(*color)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def add_heatmap(scene: Any, ct: Any, name: str, array: np.ndarray, options: DisplayOptions) -> Any:
    """A float heatmap volume in the CT's exact geometry, warm colours, transparent below threshold."""
    dims = ct.GetImageData().GetDimensions()
    if tuple(array.shape) != (dims[2], dims[1], dims[0]):
        raise ValueError(f"heatmap {name}: shape {array.shape} differs from the CT's {(dims[2], dims[1], dims[0])}")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array, dtype=np.float32))
    set_ijk_to_ras(node, ijk_to_ras(ct))
    node.SetAndObserveTransformNodeID(ct.GetTransformNodeID())  # follow the CT if it was moved
    display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
    display.SetAndObserveColorNodeID(color_node_id(scene, options.color))
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetLowerThreshold(options.threshold)
    display.SetUpperThreshold(max(1.0, float(array.max(initial=0.0))))
    display.ApplyThresholdOn()  # below-threshold voxels are transparent in the slice views
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def show_in_slice_views(scene: Any, ct: Any, heatmap: Any | None, opacity: float) -> None:
    """CT as background and (when given) the heatmap as foreground in every slice view."""
    for composite in nodes_by_class(scene, "vtkMRMLSliceCompositeNode"):
        composite.SetBackgroundVolumeID(ct.GetID())
        composite.SetForegroundVolumeID(heatmap.GetID() if heatmap is not None else None)
        composite.SetForegroundOpacity(opacity)


def add_results(ct: Any, result: Any, heatmaps: dict[str, np.ndarray] | None = None,
                options: DisplayOptions | None = None) -> ResultNodes:
    """Put a TriageResult (and its Grad-CAM volumes, {branch: (k, j, i) array}) into the scene."""
    options = options or DisplayOptions()
    scene = ct.GetScene()
    name = ct.GetName()
    remove_results(ct)  # a new run replaces the previous one, never piles up beside it
    verdict = result.verdict.to_dict()
    table = add_table(scene, f"{name} PETriage slices", result.rows)
    chart = add_chart(scene, name, table)
    maps = {b: add_heatmap(scene, ct, f"{name} Grad-CAM {b}", a, options) for b, a in (heatmaps or {}).items()}
    attrs = verdict_attributes(verdict)
    # the domain check (None: not run) and the run's warnings, where the panel and scripts can read them
    attrs["PETriage.domainCheck"] = "" if result.domain is None else json.dumps(result.domain.to_dict())
    attrs["PETriage.warnings"] = json.dumps(list(result.warnings))
    for node in [ct, table, chart, *maps.values()]:
        for key, value in attrs.items():
            node.SetAttribute(key, value)
    for node in [table, chart, *maps.values()]:
        node.SetNodeReferenceID(INPUT_ROLE, ct.GetID())
    ct.SetNodeReferenceID(TABLE_ROLE, table.GetID())
    for branch, node in maps.items():
        node.SetAttribute("PETriage.branch", branch)
    series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    folder = place_results(ct, [table, chart, *series, *maps.values()], f"PETriage: {name}")
    shown = maps.get(options.foreground_branch or "") or next(iter(maps.values()), None)
    show_in_slice_views(scene, ct, shown, options.opacity)
    log.info("%s: %s (%s)", name, verdict["verdict"], verdict["reason"])
    return ResultNodes(table=table, chart=chart, heatmaps=maps, folder_item=folder)


def place_results(ct: Any, nodes: list, folder_name: str) -> int:
    """A folder under the CT's study (or next to the CT when it has none) holding ``nodes``."""
    sh = ct.GetScene().GetSubjectHierarchyNode()
    ct_item = sh.GetItemByDataNode(ct) or sh.CreateItem(sh.GetSceneItemID(), ct)
    study = sh.GetItemAncestorAtLevel(ct_item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())
    parent = study or sh.GetItemParent(ct_item)
    folder = sh.CreateFolderItem(parent, folder_name)
    for node in nodes:
        item = sh.GetItemByDataNode(node) or sh.CreateItem(folder, node)
        sh.SetItemParent(item, folder)
    return folder


def remove_results(ct: Any) -> bool:
    """Remove the CT's latest results (their folder and every node in it); False when there are none."""
    table = results_table(ct)
    if table is None:
        return False
    scene = ct.GetScene()
    sh = scene.GetSubjectHierarchyNode()
    folder = sh.GetItemParent(sh.GetItemByDataNode(table))
    nodes = [n for n in (sh.GetItemDataNode(i) for i in _children(sh, folder)) if n is not None]
    for node in nodes:
        # Display and storage nodes belong to their data node alone: they go with it.
        owned = [node.GetNthNodeReference(role, i) for role in ("display", "storage")
                 for i in range(node.GetNumberOfNodeReferences(role))]
        scene.RemoveNode(node)
        for other in owned:
            if other is not None and scene.IsNodePresent(other):
                scene.RemoveNode(other)
    sh.RemoveItem(folder, False, True)
    ct.RemoveNodeReferenceIDs(TABLE_ROLE)
    for key in CLOT_ATTRIBUTES:  # the clot belonged to that run
        ct.RemoveAttribute(key)
    return True


def _children(sh: Any, item: int) -> list[int]:
    import vtk

    ids = vtk.vtkIdList()
    sh.GetItemChildren(item, ids, True)
    return [ids.GetId(i) for i in range(ids.GetNumberOfIds())]


def heatmap_nodes(ct: Any) -> dict[str, Any]:
    """{branch: heatmap volume node} of the CT's current results."""
    out = {}
    for node in nodes_by_class(ct.GetScene(), "vtkMRMLScalarVolumeNode"):
        if node.GetAttribute("PETriage.branch") and node.GetNodeReference(INPUT_ROLE) is ct:
            out[node.GetAttribute("PETriage.branch")] = node
    return out


def update_heatmaps(ct: Any, maps: dict[str, np.ndarray], slices: list[int],
                    options: DisplayOptions | None = None) -> dict[str, Any]:
    """Write Grad-CAM ``maps`` of ``slices`` into the CT's heatmap volumes (made when missing)."""
    options = options or DisplayOptions()
    nodes = heatmap_nodes(ct)
    folder_item = 0
    table = results_table(ct)
    if table is not None:
        sh = ct.GetScene().GetSubjectHierarchyNode()
        folder_item = sh.GetItemParent(sh.GetItemByDataNode(table))
    for branch, array in maps.items():
        node = nodes.get(branch)
        if node is None:
            node = nodes[branch] = add_heatmap(ct.GetScene(), ct, f"{ct.GetName()} Grad-CAM {branch}",
                                               np.zeros_like(array), options)
            node.SetAttribute("PETriage.branch", branch)
            node.SetNodeReferenceID(INPUT_ROLE, ct.GetID())
            if folder_item:
                sh.SetItemParent(sh.GetItemByDataNode(node) or sh.CreateItem(folder_item, node), folder_item)
        voxels = slicer.util.arrayFromVolume(node)
        voxels[slices] = array[slices]
        slicer.util.arrayFromVolumeModified(node)
        display = node.GetDisplayNode()
        display.SetUpperThreshold(max(display.GetUpperThreshold(), float(voxels.max(initial=0.0))))
    shown = nodes.get(options.foreground_branch or "") or next(iter(nodes.values()), None)
    show_in_slice_views(ct.GetScene(), ct, shown, options.opacity)
    return nodes


def show_branch(ct: Any, branch: str, opacity: float = 0.5) -> Any:
    """Show the heatmap of ``branch`` (a branch of the models that ran) over the CT in every slice view."""
    nodes = heatmap_nodes(ct)
    if branch not in nodes:
        raise KeyError(f"{ct.GetName()} has no {branch!r} heatmap (its branches: {', '.join(sorted(nodes)) or 'none'})")
    show_in_slice_views(ct.GetScene(), ct, nodes[branch], opacity)
    return nodes[branch]


def results_table(ct: Any) -> Any | None:
    """The latest results table of a CT node (after add_results), or None."""
    return ct.GetNodeReference(TABLE_ROLE)
