"""Slice-view jumps: to a row, to the max-p_pe slice, to the next positive slice (controlled results)."""
from __future__ import annotations

import numpy as np
import pytest

LABELS = ["wnl"] * 4 + ["pe", "pe", "other", "wnl", "pe"] + ["wnl"] * 3  # 12 slices, PE at 4, 5, 8
P_PE = [None] * 4 + [0.7, 0.95, 0.2, None, 0.8] + [None] * 3


def _controlled(rows):
    """What add_results reads of a TriageResult, for hand-made rows (no domain check, no warnings)."""
    from types import SimpleNamespace

    from PETriageLib.triage.verdict import patient_verdict

    return SimpleNamespace(rows=rows, verdict=patient_verdict(rows), domain=None, warnings=[])


@pytest.fixture
def results(scene, phantom_series):
    """A CT node from the phantom plus a results table with known labels and p_pe (first 12 slices)."""
    from PETriageLib.triage.verdict import SliceRow
    from PETriageSlicer.geometry import ijk_to_ras
    from PETriageSlicer.loading import load_dicom_folder
    from PETriageSlicer.results import add_results

    ct = load_dicom_folder(phantom_series)
    n = ct.GetImageData().GetDimensions()[2]
    labels = LABELS + ["wnl"] * (n - len(LABELS))
    p_pe = P_PE + [None] * (n - len(P_PE))
    z = ijk_to_ras(ct) @ np.array([[0, 0, k, 1] for k in range(n)]).T
    rows = [SliceRow(k, float(z[2, k]), f"uid{k}", True, True, 0.9 if labels[k] != "wnl" else 0.1, p_pe[k], labels[k])
            for k in range(n)]
    result = _controlled(rows)
    return add_results(ct, result), ct


def offsets(scene):
    return {v: scene.GetNodeByID(f"vtkMRMLSliceNode{v}").GetSliceOffset() for v in ("Red", "Yellow", "Green")}


def slice_ras(ct, k):
    from PETriageSlicer.geometry import slice_center_ras

    return slice_center_ras(ct, k)


def test_jump_to_slice_sets_each_view_offset(results, scene):
    import slicer

    from PETriageSlicer.geometry import ijk_to_ras
    from PETriageSlicer.navigation import current_slice, jump_to_slice

    _, ct = results
    m = ijk_to_ras(ct)
    dims = ct.GetImageData().GetDimensions()
    for k in (0, 7, dims[2] - 1):
        jump_to_slice(ct, k)
        off = offsets(scene)
        center = m @ [(dims[0] - 1) / 2, (dims[1] - 1) / 2, k, 1]
        assert off["Red"] == pytest.approx(m[2, 3] + k * m[2, 2], abs=1e-4)  # axial: S of slice k
        for view in ("Yellow", "Green"):  # sagittal, coronal: through the slice centre along their normal
            slice_to_ras = scene.GetNodeByID(f"vtkMRMLSliceNode{view}").GetSliceToRAS()
            normal = slicer.util.arrayFromVTKMatrix(slice_to_ras)[:3, 2]
            assert abs(normal[0 if view == "Yellow" else 1]) == pytest.approx(1.0)
            assert off[view] == pytest.approx(float(normal @ center[:3]), abs=1e-4)
        assert current_slice(ct) == k
    with pytest.raises(IndexError):
        jump_to_slice(ct, dims[2])


def test_jump_to_row_and_max_pe(results, scene):
    from PETriageSlicer.navigation import jump_to_max_pe, jump_to_row, max_pe_slice

    nodes, ct = results
    assert jump_to_row(nodes.table, 8) == 8
    assert offsets(scene)["Red"] == pytest.approx(slice_ras(ct, 8)[2], abs=1e-4)
    assert max_pe_slice(nodes.table) == 5
    assert jump_to_max_pe(nodes.table) == 5
    assert offsets(scene)["Red"] == pytest.approx(slice_ras(ct, 5)[2], abs=1e-4)


def test_next_positive_steps_and_wraps(results, scene):
    from PETriageSlicer.navigation import jump_to_next_positive, jump_to_slice, next_positive

    nodes, ct = results
    table = nodes.table
    assert next_positive(table, 0) == 4
    assert next_positive(table, 4) == 5
    assert next_positive(table, 5) == 8
    assert next_positive(table, 8) == 4  # wraps to the first
    assert next_positive(table, 8, step=-1) == 5
    assert next_positive(table, 4, step=-1) == 8  # wraps to the last
    assert next_positive(table, 0, labels=("other",)) == 6
    jump_to_slice(ct, 5)
    assert jump_to_next_positive(table) == 8
    assert offsets(scene)["Red"] == pytest.approx(slice_ras(ct, 8)[2], abs=1e-4)
    assert jump_to_next_positive(table) == 4
    assert jump_to_next_positive(table, step=-1) == 8


def test_no_pe_gives_none(scene, phantom_series):
    from PETriageLib.triage.verdict import SliceRow
    from PETriageSlicer.loading import load_dicom_folder
    from PETriageSlicer.navigation import jump_to_max_pe, next_positive
    from PETriageSlicer.results import add_results

    ct = load_dicom_folder(phantom_series)
    n = ct.GetImageData().GetDimensions()[2]
    rows = [SliceRow(k, float(k), "", True, True, 0.1, None, "wnl") for k in range(n)]
    nodes = add_results(ct, _controlled(rows))
    assert jump_to_max_pe(nodes.table) is None
    assert next_positive(nodes.table, 0) is None
    assert not nodes.heatmaps
    comp = scene.GetNodeByID("vtkMRMLSliceCompositeNodeRed")
    assert comp.GetBackgroundVolumeID() == ct.GetID() and comp.GetForegroundVolumeID() is None


def test_a_new_run_replaces_the_previous_results(results, scene):
    import numpy as np

    from PETriageLib.triage.verdict import SliceRow
    from PETriageSlicer.results import add_results, results_table

    first, ct = results
    n = ct.GetImageData().GetDimensions()[2]
    rows = [SliceRow(k, float(k), "", True, True, 0.9, 0.1, "other") for k in range(n)]
    maps = {"vascular": np.zeros((n, 128, 128), np.float32)}
    counts = {c: scene.GetNumberOfNodesByClass(c) for c in ("vtkMRMLTableNode", "vtkMRMLPlotChartNode",
                                                            "vtkMRMLPlotSeriesNode", "vtkMRMLScalarVolumeNode")}
    second = add_results(ct, _controlled(rows), maps)
    assert results_table(ct) is second.table
    assert not scene.IsNodePresent(first.table) and not scene.IsNodePresent(first.chart)
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == counts["vtkMRMLTableNode"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == counts["vtkMRMLPlotChartNode"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == counts["vtkMRMLPlotSeriesNode"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == counts["vtkMRMLScalarVolumeNode"] + 1
    assert ct.GetAttribute("PETriage.verdict") == "other_disease"
    sh = scene.GetSubjectHierarchyNode()
    item = sh.GetItemByDataNode(second.table)
    assert item and sh.GetItemParent(item) == second.folder_item
    displays = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeDisplayNode")
    third = add_results(ct, _controlled(rows), maps)
    assert not scene.IsNodePresent(second.heatmaps["vascular"])
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == counts["vtkMRMLScalarVolumeNode"] + 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeDisplayNode") == displays
    red = scene.GetNodeByID("vtkMRMLSliceCompositeNodeRed")
    assert red.GetForegroundVolumeID() == third.heatmaps["vascular"].GetID()
