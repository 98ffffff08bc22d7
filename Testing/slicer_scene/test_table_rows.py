"""Which table row a click means: result and worklist tables use their column names as the header
(so view row r is table row r, as qMRMLTableModel::mrmlTableRowIndex maps it), are locked against
editing, and every row (the last one too) jumps to its own slice or loads its own series. Per-CT
caches do not survive a scene close."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def triaged(tmp_path_factory, tiny_models):
    from support.phantoms import write_phantom
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.scene import new_scene

    scene = new_scene()
    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(write_phantom(tmp_path_factory.mktemp("rows") / "s", seed=5, pe=True, slices=12)))
    nodes = logic.run(ct, TriageSettings(*tiny_models, device="cpu", cam="none"))
    return scene, logic, ct, nodes


def test_panel_tables_have_a_header_row_and_are_locked(triaged):
    scene, logic, ct, nodes = triaged
    labels = logic.create_annotations(ct)
    for table in (nodes.table, labels):
        assert table.GetUseColumnTitleAsColumnHeader() and table.GetLocked()


def test_every_view_row_jumps_to_its_own_slice(triaged):
    from PETriageSlicer.geometry import slice_center_ras
    from PETriageSlicer.navigation import table_column
    from PETriageSlicer.table_rows import table_row

    scene, logic, ct, nodes = triaged
    red = scene.GetNodeByID("vtkMRMLSliceNodeRed")
    index = table_column(nodes.table, "index")
    n = nodes.table.GetNumberOfRows()
    assert n == ct.GetImageData().GetDimensions()[2] == 12
    for view_row in (0, 5, n - 1):  # the last row too
        row = table_row(nodes.table, view_row)
        assert row == view_row
        k = logic.jump_to_row(nodes.table, row)
        assert k == index[view_row]
        assert red.GetSliceOffset() == pytest.approx(slice_center_ras(ct, k)[2], abs=1e-3)
    with pytest.raises(IndexError, match="not a table row"):
        table_row(nodes.table, n)


def test_a_table_with_names_in_row_zero_is_mapped_one_down(triaged):
    """Slicer's default (UseColumnTitleAsColumnHeader off): model row 0 holds the column names."""
    from PETriageSlicer.table_rows import table_row

    scene, logic, ct, nodes = triaged
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", "plain")
    node.GetTable().DeepCopy(nodes.table.GetTable())
    assert not node.GetUseColumnTitleAsColumnHeader()
    assert table_row(node, 1) == 0 and table_row(node, node.GetNumberOfRows()) == node.GetNumberOfRows() - 1
    with pytest.raises(IndexError):
        table_row(node, 0)  # the names row is no table row


def test_worklist_view_rows_are_ranked_rows(scene, tiny_models, tmp_path):
    from support.phantoms import write_phantom
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.navigation import table_column
    from PETriageSlicer.table_rows import table_row

    for name, seed, pe in (("a", 41, True), ("b", 42, False)):
        write_phantom(tmp_path / name, seed, pe, slices=10)
    logic = PETriageSceneLogic(scene)
    table = logic.screen_folder(str(tmp_path), TriageSettings(*tiny_models, device="cpu"))
    assert table.GetUseColumnTitleAsColumnHeader() and table.GetLocked()
    ranks, uids = table_column(table, "rank"), table_column(table, "series_uid")
    assert ranks == [1, 2]
    last = table_row(table, 1)
    node = logic.load_worklist_row(table, last)  # the last row loads its own series, no IndexError
    sh = scene.GetSubjectHierarchyNode()
    assert sh.GetItemUID(sh.GetItemByDataNode(node), "DICOM") == uids[1]


def test_scene_close_forgets_the_per_ct_runs(triaged):
    scene, logic, ct, nodes = triaged
    logic.heatmaps_for_slices(ct, [3])  # works before the close
    assert ct.GetID() in logic.last_tasks
    scene.Clear(0)
    assert logic.last_tasks == {}
    from PETriageSlicer.loading import load_dicom_folder  # a new CT may get the old node ID

    files = ct.GetAttribute("PETriage.sourceFiles").split("|")
    again = load_dicom_folder(files, scene=scene)
    with pytest.raises(RuntimeError, match="has not been triaged"):
        logic.heatmaps_for_slices(again, [3])
