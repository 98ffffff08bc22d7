"""Triage and screening as the panel runs them: in a child process (PythonSlicer / this Python running
PETriageSlicer.triage_child), progress read from its output on this thread, results published here;
cancel kills the child and leaves the scene as it was. Plus Grad-CAM on demand after a run."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from support.phantoms import write_phantom


def _table(node) -> dict:
    from PETriageSlicer.navigation import table_column

    return {c: table_column(node, c) for c in ("index", "z", "instance_uid", "label", "p_disease", "p_pe")}


def test_child_triage_publishes_the_nodes_of_the_in_process_path(scene, phantom_series, tiny_models):
    import slicer

    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    settings = TriageSettings(*tiny_models, device="cpu", top_k=2)
    reference = logic.run(ct, settings)  # in-process
    expected = _table(reference.table)
    expected_maps = {b: slicer.util.arrayFromVolume(n).copy() for b, n in reference.heatmaps.items()}
    expected_verdict = {k: ct.GetAttribute(f"PETriage.{k}") for k in ("verdict", "reason", "pe_score")}
    nodes_before = scene.GetNumberOfNodes()

    job = logic.start_triage(ct, settings)
    assert job.process.running or job.process.returncode == 0
    assert job.wait(300) == 0, job.process.tail()
    assert scene.GetNumberOfNodes() == nodes_before  # the child made no node
    step = job.process.progress
    assert step.done == step.total == 2 and step.message.startswith("Grad-CAM"), step
    assert not any(line.startswith("PETRIAGE-PROGRESS") for line in job.process.lines)

    nodes = job.publish()
    assert not job.dir.exists()  # the job folder is removed once published
    assert scene.GetNumberOfNodes() == nodes_before  # the new results replaced the in-process ones
    got = _table(nodes.table)
    assert got["index"] == expected["index"] and got["instance_uid"] == expected["instance_uid"]
    assert got["label"] == expected["label"]
    for column in ("z", "p_disease", "p_pe"):
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-5, atol=1e-6)
    assert set(nodes.heatmaps) == set(expected_maps) == {"vascular", "lung"}
    for branch, node in nodes.heatmaps.items():
        np.testing.assert_allclose(slicer.util.arrayFromVolume(node), expected_maps[branch], atol=1e-4)
    assert {k: ct.GetAttribute(f"PETriage.{k}") for k in expected_verdict} == expected_verdict
    red = scene.GetNodeByID("vtkMRMLSliceCompositeNodeRed")
    assert red.GetForegroundVolumeID() == nodes.heatmaps["vascular"].GetID()
    # The published run is the CT's latest: Grad-CAM on demand works on it in this process.
    maps = logic.heatmaps_for_slices(ct, [5])
    assert slicer.util.arrayFromVolume(maps["lung"])[5].max() > 0


def test_cancel_kills_the_child_and_leaves_the_scene_clean(scene, phantom_series, tiny_models):
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.results import results_table

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    nodes_before = scene.GetNumberOfNodes()
    job = logic.start_triage(ct, TriageSettings(*tiny_models, device="cpu"))
    deadline = time.monotonic() + 120
    while job.process.progress.message != "loading the models" and time.monotonic() < deadline:
        assert not job.poll(), job.process.tail()  # the child is still working
        time.sleep(0.05)
    assert job.process.running
    job.cancel()
    assert not job.process.running and job.process.returncode != 0 and job.cancelled
    assert not job.dir.exists()
    with pytest.raises(RuntimeError, match="cancelled"):
        job.publish()
    assert scene.GetNumberOfNodes() == nodes_before and results_table(ct) is None


def test_a_failing_child_names_the_reason(scene, phantom_series, tiny_models, tmp_path):
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    missing = tmp_path / "no_such_stage2.pt"
    job = logic.start_triage(ct, TriageSettings(tiny_models[0], str(missing), device="cpu"))
    assert job.wait(300) == 1
    with pytest.raises(RuntimeError, match="no_such_stage2.pt"):
        job.publish()
    assert not job.dir.exists()


def test_screening_in_a_child_process_gives_the_in_process_worklist(scene, tiny_models, tmp_path):
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.navigation import table_column
    from PETriageSlicer.worklist_table import ct_folder_sources

    for name, seed, pe in (("a", 31, True), ("b", 32, False)):
        write_phantom(tmp_path / name, seed, pe, slices=12)
    logic = PETriageSceneLogic(scene)
    settings = TriageSettings(*tiny_models, device="cpu")
    reference = logic.screen_folder(str(tmp_path), settings)
    job = logic.start_screening(ct_folder_sources(tmp_path), settings)
    assert job.wait(300) == 0, job.process.tail()
    assert job.process.progress.done == job.process.progress.total == 2
    table = job.publish(scene)
    assert table.GetAttribute("PETriage.worklist") == "1" and table.GetNumberOfRows() == 2
    for column in ("rank", "series_uid", "verdict", "source"):
        assert table_column(table, column) == table_column(reference, column)
    np.testing.assert_allclose(table_column(table, "pe_score"), table_column(reference, "pe_score"), rtol=1e-5)


def test_output_is_read_on_this_thread_with_tqdm_redraws_and_bad_bytes(tmp_path):
    from PETriageSlicer.child_process import ChildProcess

    script = ("import sys, time; w = sys.stdout.buffer.write; "
              "w(b'PETRIAGE-PROGRESS 1 4 first\\n'); sys.stdout.flush(); "
              "w(b' 40%|####      | 4/10\\r 70%|#######   | 7/10\\r'); w(b'bad \\xff byte\\n'); "
              "w(b'PETRIAGE-PROGRESS 4 4 last'); sys.stdout.flush()")
    child = ChildProcess([sys.executable, "-c", script], tmp_path / "log.txt", "demo").start()
    assert child.wait(60) == 0
    assert child.progress.done == 4 and child.progress.total == 4 and child.progress.message == "last"
    assert child.lines == [" 40%|####      | 4/10", " 70%|#######   | 7/10", "bad \ufffd byte"]


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


def test_cancel_kills_a_child_that_ignores_terminate(tmp_path):
    import signal

    from PETriageSlicer.child_process import ChildProcess

    script = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('PETRIAGE-PROGRESS 0 1 waiting', flush=True); time.sleep(120)")
    child = ChildProcess([sys.executable, "-c", script], tmp_path / "log.txt", "stubborn").start()
    deadline = time.monotonic() + 60
    while child.progress.message != "waiting" and time.monotonic() < deadline:
        child.poll()
        time.sleep(0.05)
    started = time.monotonic()
    child.cancel(timeout=1.0)
    assert time.monotonic() - started < 10
    assert not child.running and child.returncode == -signal.SIGKILL and child.cancelled
