"""A triage run with tiny models puts the right nodes into a real MRML scene, and they survive .mrb."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest


@pytest.fixture(scope="module")
def run(tiny_models, phantom_series):
    """Load the phantom study, triage it through the logic, and the same with PETriageLib directly."""
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.ingest.load import load_series
    from PETriageLib.explain.cam_slices import select_cam_slices
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.results import DisplayOptions
    from PETriageSlicer.scene import new_scene

    scene = new_scene()
    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    display = DisplayOptions(color="PET-Heat", threshold=0.3, opacity=0.6, foreground_branch="lung")
    settings = TriageSettings(*tiny_models, device="cpu", cam="top-k", top_k=3, display=display)
    calls = []
    nodes = logic.run(ct, settings, progress=lambda done, total, msg: calls.append((done, total, msg)))

    cascade = build_cascade(*tiny_models, device="cpu")
    reference = cascade.run(load_series(phantom_series))
    cam_slices = select_cam_slices(reference.rows, "top-k", 3)
    from PETriageLib.explain.heatmaps import compute_heatmaps

    ref_maps = compute_heatmaps(cascade, reference, cam_slices).volumes
    return SimpleNamespace(scene=scene, ct=ct, nodes=nodes, reference=reference, ref_maps=ref_maps,
                           cam_slices=cam_slices, display=display, progress=calls)


def column(table, name):
    from PETriageSlicer.navigation import table_column

    return table_column(table, name)


def test_table_has_one_row_per_slice_in_anatomical_order(run):
    table, ref = run.nodes.table, run.reference
    n = run.ct.GetImageData().GetDimensions()[2]
    assert table.GetNumberOfRows() == n == len(ref.rows)
    assert table.GetName() == f"{run.ct.GetName()} PETriage slices"
    assert column(table, "index") == list(range(n))
    z = np.array(column(table, "z"))
    assert np.all(np.diff(z) > 0)
    np.testing.assert_allclose(z, [r.z for r in ref.rows], atol=1e-3)
    # Same probabilities as the library's cascade on the same files.
    np.testing.assert_allclose(column(table, "p_disease"), [r.p_disease if r.p_disease is not None else np.nan
                                                            for r in ref.rows], atol=1e-5)
    np.testing.assert_allclose(column(table, "p_pe"), [r.p_pe if r.p_pe is not None else np.nan
                                                       for r in ref.rows], atol=1e-5)
    assert column(table, "label") == [r.label or "" for r in ref.rows]
    assert run.progress and run.progress[-1][0] == run.progress[-1][1]


def test_chart_plots_both_probabilities_along_z(run):
    chart, table = run.nodes.chart, run.nodes.table
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = [chart.GetNthPlotSeriesNode(i) for i in range(2)]
    assert {s.GetYColumnName() for s in series} == {"p_disease", "p_pe"}
    assert not chart.GetYAxisRangeAuto() and list(chart.GetYAxisRange()) == [0.0, 1.0]  # probabilities: fixed 0..1
    for s in series:
        assert s.GetXColumnName() == "z"
        assert s.GetTableNodeID() == table.GetID()


def test_any_branch_of_the_models_that_ran_can_be_shown(run):
    """Branch names come from the run (the checkpoint's windows), never from a fixed list."""
    from PETriageSlicer.results import show_branch

    red = run.scene.GetNodeByID("vtkMRMLSliceCompositeNodeRed")
    try:
        assert show_branch(run.ct, "vascular", 0.4) is run.nodes.heatmaps["vascular"]
        assert red.GetForegroundVolumeID() == run.nodes.heatmaps["vascular"].GetID()
        assert red.GetForegroundOpacity() == pytest.approx(0.4)
        with pytest.raises(KeyError, match="its branches: lung, vascular"):
            show_branch(run.ct, "pe")  # the shipped models' branch, not these tiny models'
    finally:
        show_branch(run.ct, "lung", run.display.opacity)  # as the run left it, for the other tests


def test_heatmaps_share_the_ct_geometry_and_values(run):
    import slicer

    from PETriageSlicer.geometry import ijk_to_ras

    maps = run.nodes.heatmaps
    assert set(maps) == set(run.ref_maps) == {"vascular", "lung"}
    for branch, node in maps.items():
        np.testing.assert_allclose(ijk_to_ras(node), ijk_to_ras(run.ct), atol=1e-9)
        arr = slicer.util.arrayFromVolume(node)
        np.testing.assert_allclose(arr, run.ref_maps[branch], atol=1e-4)
        hot = sorted(set(np.nonzero(arr.reshape(arr.shape[0], -1).max(axis=1))[0].tolist()))
        assert set(hot) <= set(run.cam_slices) and hot  # maps only on the Grad-CAM slices
        assert node.GetAttribute("PETriage.branch") == branch


def test_heatmap_display_warm_colors_threshold(run):
    scene = run.scene
    for node in run.nodes.heatmaps.values():
        display = node.GetDisplayNode()
        assert display.GetColorNode().GetName() == "PET-Heat"
        assert display.GetApplyThreshold()
        assert display.GetLowerThreshold() == pytest.approx(0.3)
        assert not display.GetAutoWindowLevel()
        assert display.GetWindowLevelMin() == pytest.approx(0.0)
        assert display.GetWindowLevelMax() == pytest.approx(1.0)
    composites = [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
                  for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
    assert len(composites) == 3
    for comp in composites:
        assert comp.GetBackgroundVolumeID() == run.ct.GetID()
        assert comp.GetForegroundVolumeID() == run.nodes.heatmaps["lung"].GetID()
        assert comp.GetForegroundOpacity() == pytest.approx(0.6)


def test_verdict_stored_on_nodes(run):
    verdict = run.reference.verdict
    for node in [run.ct, run.nodes.table, run.nodes.chart, *run.nodes.heatmaps.values()]:
        assert node.GetAttribute("PETriage.verdict") == verdict.verdict
        assert node.GetAttribute("PETriage.reason") == verdict.reason
        stored = json.loads(node.GetAttribute("PETriage.result"))
        assert stored["max_pe_slice"] == verdict.max_pe_slice
        assert stored["pe_score"] == pytest.approx(verdict.pe_score)
        # the tiny test models carry no training statistics: no domain check, and the series' warnings
        assert node.GetAttribute("PETriage.domainCheck") == "" and run.reference.domain is None
        assert json.loads(node.GetAttribute("PETriage.warnings")) == run.reference.warnings


def test_results_live_under_the_input_study(run):
    import slicer

    SH = slicer.vtkMRMLSubjectHierarchyConstants
    sh = run.scene.GetSubjectHierarchyNode()
    study = sh.GetItemParent(sh.GetItemByDataNode(run.ct))
    assert sh.GetItemLevel(study) == SH.GetDICOMLevelStudy()
    folder = run.nodes.folder_item
    assert sh.GetItemParent(folder) == study
    assert sh.GetItemName(folder) == f"PETriage: {run.ct.GetName()}"
    for node in [run.nodes.table, run.nodes.chart, *run.nodes.heatmaps.values()]:
        item = sh.GetItemByDataNode(node)
        assert sh.GetItemParent(item) == folder
        assert sh.GetItemAncestorAtLevel(item, SH.GetDICOMLevelStudy()) == study
        assert node.GetNodeReference("PETriageInput") is run.ct


def test_scene_saves_to_mrb_and_reloads_with_all_results(run, tmp_path):
    import slicer

    from PETriageSlicer.annotation import (LABELS_ROLE, create_annotations, create_lesion_segmentation,
                                           labels_of, lesion_mask, set_labels, set_segment_from_array)
    from PETriageSlicer.geometry import ijk_to_ras
    from PETriageSlicer.results import results_table
    from PETriageSlicer.scene import load_mrb, new_scene, save_mrb

    labels = create_annotations(run.ct)
    set_labels(labels, [2, 3], "pe")
    seg = create_lesion_segmentation(run.ct)
    painted = np.zeros(slicer.util.arrayFromVolume(run.ct).shape, np.uint8)
    painted[3, 50:60, 50:60] = 1
    set_segment_from_array(seg, "pe", painted, run.ct)

    path = save_mrb(run.scene, str(tmp_path / "triage.mrb"))
    restored = new_scene()
    load_mrb(restored, path, str(tmp_path / "unpacked"))
    ct = restored.GetFirstNodeByName(run.ct.GetName())
    assert ct is not None and ct.GetAttribute("PETriage.verdict") == run.reference.verdict.verdict
    table = results_table(ct)
    assert table is not None and table.GetNumberOfRows() == run.nodes.table.GetNumberOfRows()
    np.testing.assert_allclose(column(table, "p_pe"), column(run.nodes.table, "p_pe"), atol=1e-6)
    assert column(table, "label") == column(run.nodes.table, "label")
    assert [str(u) for u in column(table, "instance_uid")] == column(run.nodes.table, "instance_uid")
    charts = restored.GetNodesByClass("vtkMRMLPlotChartNode")
    assert charts.GetNumberOfItems() == 1 and charts.GetItemAsObject(0).GetNumberOfPlotSeriesNodes() == 2
    for branch, old in run.nodes.heatmaps.items():
        new = restored.GetFirstNodeByName(old.GetName())
        np.testing.assert_allclose(ijk_to_ras(new), ijk_to_ras(ct), atol=1e-6)
        np.testing.assert_allclose(slicer.util.arrayFromVolume(new), slicer.util.arrayFromVolume(old), atol=1e-6)
        assert new.GetDisplayNode().GetApplyThreshold()
        assert new.GetDisplayNode().GetColorNode().GetName() == "PET-Heat"
        assert new.GetNodeReference("PETriageInput") is ct
    red = restored.GetNodeByID("vtkMRMLSliceCompositeNodeRed")
    assert red.GetForegroundVolumeID() == restored.GetFirstNodeByName(run.nodes.heatmaps["lung"].GetName()).GetID()
    sh = restored.GetSubjectHierarchyNode()
    series = sh.GetItemByDataNode(ct)
    assert sh.GetItemUID(series, "DICOM") == run.reference.volume.metadata["series_uid"]
    study = sh.GetItemParent(series)
    assert sh.GetItemParent(sh.GetItemParent(sh.GetItemByDataNode(table))) == study
    # The user's annotations come back too: slice labels and the painted lesion.
    assert labels_of(ct.GetNodeReference(LABELS_ROLE)) == labels_of(labels)
    new_seg = restored.GetFirstNodeByName(seg.GetName())
    assert np.array_equal(lesion_mask(new_seg, ct), lesion_mask(seg, run.ct))
    assert lesion_mask(new_seg, ct).sum() == 100


def test_patient_classifier_setting_decides_the_verdict(scene, phantom_series, tiny_models, tmp_path):
    """A patient classifier for these two models (weights as initialised: the test is about the
    wiring): its p(PE) and rule land on the CT node, and the verdict follows its threshold."""
    import torch

    from PETriageLib.models.checkpoint import file_sha256
    from PETriageLib.models.series_nets import PatientClassifier
    from PETriageLib.training.series_models.patient import PatientTrainConfig, save_patient_classifier
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    torch.manual_seed(0)
    stages = [{"sha256": file_sha256(p), "path": p} for p in tiny_models]
    verdicts = {}
    for threshold in (0.0, 1.0):  # every p(PE) passes 0, none reaches 1
        path = save_patient_classifier(tmp_path / f"patient-{threshold}.pt", PatientClassifier(2, "bilstm", 8),
                                       PatientTrainConfig(features="scores"), {"threshold": threshold}, stages)
        logic = PETriageSceneLogic(scene)
        ct = logic.load_dicom(str(phantom_series))
        logic.run(ct, TriageSettings(*tiny_models, device="cpu", cam="none", patient_model=str(path)))
        assert ct.GetAttribute("PETriage.rule") == "patient classifier"
        assert 0.0 < float(ct.GetAttribute("PETriage.patient_probability")) < 1.0
        verdicts[threshold] = ct.GetAttribute("PETriage.verdict")
    assert verdicts[0.0] == "pe_suspected" and verdicts[1.0] != "pe_suspected"


def test_refiner_setting_rescores_the_table(scene, phantom_series, tiny_models, tmp_path):
    """A slice refiner for these two models (weights as initialised: the test is about the wiring):
    the table holds its probabilities, labelled at its thresholds."""
    import torch

    from PETriageLib.models.checkpoint import file_sha256
    from PETriageLib.training.series_models.train_config import RefinerTrainConfig
    from PETriageLib.models.series_nets import SliceRefiner
    from PETriageLib.training.series_models.refiner import save_slice_refiner
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.navigation import table_column

    torch.manual_seed(0)
    stages = [{"sha256": file_sha256(p), "path": p} for p in tiny_models]
    path = save_slice_refiner(tmp_path / "refiner.pt", SliceRefiner(2, 8), RefinerTrainConfig(),
                              {"threshold_disease": 0.0, "threshold_pe": 1.0}, stages)
    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    nodes = logic.run(ct, TriageSettings(*tiny_models, device="cpu", cam="none", refiner=str(path)))
    task = logic.last_tasks[ct.GetID()]
    assert task.result.run.refiner == str(path)
    labels = table_column(nodes.table, "label")
    # threshold 0 passes every analysed slice to stage 2; no refined p(PE) reaches 1: all "other"
    assert set(labels) - {""} == {"other"}
    assert ct.GetAttribute("PETriage.verdict") == "other_disease"


def test_panel_offers_the_shipped_refiner_by_name_and_it_runs_on_the_shipped_pair(scene, phantom_series):
    """The panel's refiner list is what models.json registers; the first entry of each model list
    (what the panel selects by default) with the offered refiner triages a study."""
    from PETriageLib.models.series_checkpoint import load_slice_refiner
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.model_list import model_names, series_model_names
    from PETriageSlicer.navigation import table_column

    refiners = series_model_names("slice_refiner")
    assert refiners == ["cbamdrn_d22_demo_refiner"]
    assert series_model_names("patient_classifier") == []  # none shipped: the list holds only "(none)"
    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    # the 128 x 128 test phantom is coarser than any the demo models saw: their domain check
    # refuses it (score about 900, limit 277), so 'warn' here, where the scene mechanics are tested
    settings = TriageSettings(model_names(1)[0], model_names(2)[0], device="cpu", cam="none", refiner=refiners[0],
                              domain_check="warn")
    nodes = logic.run(ct, settings)
    assert logic.last_tasks[ct.GetID()].result.run.refiner == refiners[0]
    _, meta = load_slice_refiner(refiners[0])
    rows = [(label, float(d), float(p)) for label, d, p in zip(table_column(nodes.table, "label"),
            table_column(nodes.table, "p_disease"), table_column(nodes.table, "p_pe")) if label]
    assert rows and {label for label, _, _ in rows} <= {"wnl", "other", "pe"}
    for label, p_disease, p_pe in rows:  # labelled at the refiner's thresholds, not the stages'
        assert (p_disease >= meta["threshold_disease"] - 1e-3) == (label != "wnl"), (label, p_disease)
        if label != "wnl":
            assert (p_pe >= meta["threshold_pe"] - 1e-3) == (label == "pe"), (label, p_pe)
    assert ct.GetAttribute("PETriage.verdict") == "pe_suspected"  # the study has PE
    domain = json.loads(ct.GetAttribute("PETriage.domainCheck"))
    assert not domain["in_domain"] and domain["model"] == model_names(1)[0]
    assert len(json.loads(ct.GetAttribute("PETriage.warnings"))) == 1


def test_shipped_models_on_a_real_ct_warn_in_the_scene(scene, real_series_dir):
    """With domain check 'warn', the phantom-trained pair triages the real pneumonia CT and the
    scene carries the check (out of domain) and its reason as a warning, where the panel shows it."""
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.model_list import model_names

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(real_series_dir))
    logic.run(ct, TriageSettings(model_names(1)[0], model_names(2)[0], device="cpu", cam="none",
                                 domain_check="warn"))
    domain = json.loads(ct.GetAttribute("PETriage.domainCheck"))
    assert not domain["in_domain"] and domain["score"] > domain["threshold"]
    warnings = json.loads(ct.GetAttribute("PETriage.warnings"))
    assert any(w.startswith("the series is unlike the data model") for w in warnings)
    assert ct.GetAttribute("PETriage.verdict") == "other_disease"
    assert logic.last_tasks[ct.GetID()].result.options.domain_check == "warn"
