"""The widget's pattern without the widget: prepare in this thread, compute on a worker thread with
progress and cancel, publish the nodes back in this thread."""
from __future__ import annotations


def test_triage_on_a_worker_thread_then_publish(scene, phantom_series, tiny_models):
    from PETriageSlicer.background import BackgroundWork
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    task = logic.prepare(ct, TriageSettings(*tiny_models, device="cpu", top_k=1))
    nodes_before = scene.GetNumberOfNodes()
    work = BackgroundWork(lambda report, cancel: task.compute(report, cancel), "triage").start()
    assert work.join(120)
    assert work.error is None and not work.cancelled
    assert scene.GetNumberOfNodes() == nodes_before  # the worker made no nodes
    done, total, message = work.progress
    assert done == total == 1 and message.startswith("Grad-CAM")
    nodes = task.publish()
    assert nodes.table.GetNumberOfRows() == ct.GetImageData().GetDimensions()[2]
    assert set(nodes.heatmaps) == {"vascular", "lung"}


def test_cancel_is_reported_not_raised(scene, phantom_series, tiny_models):
    from PETriageSlicer.background import BackgroundWork
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    task = logic.prepare(logic.load_dicom(str(phantom_series)), TriageSettings(*tiny_models, device="cpu"))
    work = BackgroundWork(lambda report, cancel: task.compute(report, cancel), "triage")
    work.cancel.set()  # pressed before the first batch
    assert work.start().join(120)
    assert work.cancelled and "cancelled" in str(work.error)
    assert task.result is None


def test_errors_are_kept_for_the_gui():
    from PETriageSlicer.background import BackgroundWork

    def broken(report, cancel):
        report(1, 3, "first")
        raise ValueError("bad input file")

    work = BackgroundWork(broken, "job").start()
    assert work.join(10)
    assert isinstance(work.error, ValueError) and not work.cancelled
    assert work.progress == (1, 3, "first") and work.value is None


def test_grad_cam_on_demand_for_chosen_slices(scene, phantom_series, tiny_models):
    import numpy as np
    import slicer

    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.ingest.load import load_series
    from PETriageSlicer.geometry import ijk_to_ras
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    nodes = logic.run(ct, TriageSettings(*tiny_models, device="cpu", cam="none"))
    assert not nodes.heatmaps
    maps = logic.heatmaps_for_slices(ct, [9])
    assert set(maps) == {"vascular", "lung"}
    cascade = build_cascade(*tiny_models, device="cpu")
    from PETriageLib.explain.heatmaps import compute_heatmaps

    reference = compute_heatmaps(cascade, cascade.run(load_series(phantom_series)), [9]).volumes
    for branch, node in maps.items():
        arr = slicer.util.arrayFromVolume(node)
        np.testing.assert_allclose(arr, reference[branch], atol=1e-4)
        assert arr[9].max() > 0 and not np.delete(arr, 9, axis=0).any()
        np.testing.assert_allclose(ijk_to_ras(node), ijk_to_ras(ct))
    assert scene.GetNodeByID("vtkMRMLSliceCompositeNodeRed").GetForegroundVolumeID() == maps["vascular"].GetID()
    sh = scene.GetSubjectHierarchyNode()
    assert sh.GetItemParent(sh.GetItemByDataNode(maps["lung"])) == nodes.folder_item
    again = logic.heatmaps_for_slices(ct, [10])  # adds to the same volumes
    assert again["lung"] is maps["lung"]
    assert slicer.util.arrayFromVolume(maps["lung"])[[9, 10]].reshape(2, -1).max(axis=1).min() > 0
