"""Issue #24 in the scene: a report folder's embolus mask becomes a segmentation node under the CT's
study, its probability a volume, and the clot volume (measured in the scene) lands in the results table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from PETriageLib.ingest.load import load_series
from PETriageLib.phantom import FINDING_CODES, generate_study, write_study
from PETriageLib.reporting.nrrd_writer import write_nrrd_streamed


@pytest.fixture(scope="module")
def clot_study(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A formula phantom with PE: its DICOM series and its clot mask (k, j, i) on the series' grid."""
    study = generate_study(5, matrix=96, slices=20, pe=True, contrast="ctpa", difficulty="easy")
    series = write_study(study, tmp_path_factory.mktemp("clot") / "study")["series_dir"]
    mask = (study.masks == FINDING_CODES["pe"]).astype(np.uint8)
    assert mask.any(), "the phantom must hold a clot"
    return series, mask


def embolus_block(mask: np.ndarray, spacing, probability_max: float) -> dict:
    slices = [int(k) for k in np.flatnonzero(mask.any(axis=(1, 2)))]
    from scipy import ndimage

    return {"model": "test-embolus-head", "pathway": "ctpa", "threshold": 0.5,
            "volume_ml": float(mask.sum()) * float(np.prod(spacing)) / 1000.0,
            "max_probability": probability_max, "slices": slices,
            "n_components": int(ndimage.label(mask)[1]),
            "files": {"probability": "embolus_probability.nrrd", "mask": "embolus_mask.nrrd"}}


def write_report_folder(out: Path, series: Path, mask: "np.ndarray | None", origin_shift: float = 0.0) -> Path:
    """A report folder as issue #24's contract has it, the volumes written by the library's NRRD writer."""
    vol = load_series(series)
    out.mkdir(parents=True, exist_ok=True)
    report = {"phase": {"requested": "auto", "used": "ctpa", "measured_blood_hu": 310.0, "reason": "test"},
              "embolus": None}
    if mask is not None:
        origin = np.asarray(vol.origin, float) + origin_shift
        probability = np.where(mask > 0, 0.9, 0.05).astype(np.float32)
        write_nrrd_streamed(out / "embolus_mask.nrrd", mask.astype(np.float32), vol.spacing, origin, vol.direction)
        write_nrrd_streamed(out / "embolus_probability.nrrd", probability, vol.spacing, origin, vol.direction)
        report["embolus"] = embolus_block(mask, vol.spacing, 0.9)
    (out / "report.json").write_text(json.dumps(report))
    return out


@pytest.fixture
def triaged(scene, clot_study, tiny_models):
    """The CT loaded from its DICOM files and triaged by the tiny cascade (the results table exists)."""
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(clot_study[0]))
    nodes = logic.run(ct, TriageSettings(*tiny_models, device="cpu", cam="none", domain_check="off"))
    return logic, ct, nodes


def study_item(node):
    import slicer

    sh = node.GetScene().GetSubjectHierarchyNode()
    return sh.GetItemAncestorAtLevel(sh.GetItemByDataNode(node), slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())


def test_mask_becomes_a_segment_under_the_study_and_its_volume_fills_the_table(triaged, clot_study, tmp_path):
    import slicer

    from PETriageSlicer.embolus_nodes import CLOT_COLUMN, EMBOLUS_SEGMENT, add_embolus_nodes
    from PETriageSlicer.navigation import table_column

    logic, ct, nodes = triaged
    series, mask = clot_study
    folder = write_report_folder(tmp_path / "report", series, mask)
    report = json.loads((folder / "report.json").read_text())["embolus"]
    found = add_embolus_nodes(ct, folder, nodes.table)

    seg = found.segmentation
    assert seg.IsA("vtkMRMLSegmentationNode")
    assert study_item(seg) and study_item(seg) == study_item(ct)
    assert study_item(found.probability) == study_item(ct)
    assert seg.GetNodeReference("PETriageInput") is ct
    assert [seg.GetSegmentation().GetNthSegmentID(i) for i in range(seg.GetSegmentation().GetNumberOfSegments())] \
        == [EMBOLUS_SEGMENT]
    # the segment exported on the CT's grid is the mask, voxel for voxel
    labelmap = scene_labelmap(seg, ct)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap) > 0, mask > 0)
    # the probability volume is the file's, on the CT's grid
    assert slicer.util.arrayFromVolume(found.probability).max() == pytest.approx(0.9, abs=1e-6)
    # clot volume measured in the scene = the mask's mL = report.json's
    voxel_ml = float(np.prod(ct.GetSpacing())) / 1000.0
    assert found.volume_ml == pytest.approx(mask.sum() * voxel_ml, rel=1e-9)
    assert found.volume_ml == pytest.approx(report["volume_ml"], rel=1e-6)
    per_slice = table_column(nodes.table, CLOT_COLUMN)
    index = table_column(nodes.table, "index")
    assert sum(per_slice) == pytest.approx(report["volume_ml"], rel=1e-6)
    for k, ml in zip(index, per_slice):
        assert ml == pytest.approx(mask[int(k)].sum() * voxel_ml, rel=1e-9, abs=1e-12)
    for node in (ct, nodes.table, seg):
        assert float(node.GetAttribute("PETriage.clotVolumeMl")) == pytest.approx(report["volume_ml"], rel=1e-6)
        assert json.loads(node.GetAttribute("PETriage.clotSlices")) == report["slices"]
    assert found.summary.startswith("Clot volume: ") and f"({len(report['slices'])} slices)" in found.summary


def scene_labelmap(seg, ct):
    import slicer
    import vtk

    lm = ct.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported embolus")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue("Embolus")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(seg, ids, lm, ct)
    assert lm.GetImageData().GetDimensions() == ct.GetImageData().GetDimensions()
    return lm


def test_a_mask_on_another_grid_is_refused_and_nothing_is_added(triaged, clot_study, tmp_path):
    from PETriageSlicer.embolus_nodes import CLOT_COLUMN, EmbolusRefused, add_embolus_nodes
    from PETriageSlicer.scene import nodes_by_class

    logic, ct, nodes = triaged
    series, mask = clot_study
    before = ct.GetScene().GetNumberOfNodes()
    shifted = write_report_folder(tmp_path / "shifted", series, mask, origin_shift=2.5)
    with pytest.raises(EmbolusRefused, match="origin or direction differ from the CT's"):
        add_embolus_nodes(ct, shifted, nodes.table)
    cropped = tmp_path / "cropped"
    write_report_folder(cropped, series, mask)
    vol = load_series(series)
    write_nrrd_streamed(cropped / "embolus_mask.nrrd", mask[1:].astype(np.float32), vol.spacing, vol.origin,
                        vol.direction)
    with pytest.raises(EmbolusRefused, match="differs from the CT's"):
        add_embolus_nodes(ct, cropped, nodes.table)
    assert ct.GetScene().GetNumberOfNodes() == before
    assert not nodes_by_class(ct.GetScene(), "vtkMRMLSegmentationNode")
    assert nodes.table.GetTable().GetColumnByName(CLOT_COLUMN) is None
    assert ct.GetAttribute("PETriage.clotVolumeMl") is None


def test_a_volume_that_disagrees_with_the_report_is_refused(triaged, clot_study, tmp_path):
    from PETriageSlicer.embolus_nodes import EmbolusRefused, add_embolus_nodes
    from PETriageSlicer.scene import nodes_by_class

    logic, ct, nodes = triaged
    folder = write_report_folder(tmp_path / "report", *clot_study)
    data = json.loads((folder / "report.json").read_text())
    data["embolus"]["volume_ml"] *= 1.001
    (folder / "report.json").write_text(json.dumps(data))
    with pytest.raises(EmbolusRefused, match="report.json says"):
        add_embolus_nodes(ct, folder, nodes.table)
    assert not nodes_by_class(ct.GetScene(), "vtkMRMLSegmentationNode")


def test_no_segmentation_means_no_node_and_the_table_says_no_clot(triaged, clot_study, tmp_path):
    import math

    from PETriageSlicer.embolus_nodes import CLOT_COLUMN, NO_CLOT, add_embolus_nodes
    from PETriageSlicer.navigation import table_column
    from PETriageSlicer.scene import nodes_by_class

    logic, ct, nodes = triaged
    found = add_embolus_nodes(ct, write_report_folder(tmp_path / "none", clot_study[0], None), nodes.table)
    assert found.segmentation is None and found.probability is None and found.volume_ml is None
    assert not nodes_by_class(ct.GetScene(), "vtkMRMLSegmentationNode")
    assert all(math.isnan(v) for v in table_column(nodes.table, CLOT_COLUMN))
    assert nodes.table.GetAttribute("PETriage.clotSummary") == NO_CLOT
    assert nodes.table.GetAttribute("PETriage.clotVolumeMl") == ""
    empty = np.zeros_like(clot_study[1])
    found = add_embolus_nodes(ct, write_report_folder(tmp_path / "empty", clot_study[0], empty), nodes.table)
    assert found.volume_ml == 0.0 and found.slices == [] and found.summary == NO_CLOT
    assert table_column(nodes.table, CLOT_COLUMN) == [0.0] * nodes.table.GetNumberOfRows()


def test_a_new_run_removes_the_embolus_nodes_with_the_results(triaged, clot_study, tmp_path):
    from PETriageSlicer.embolus_nodes import add_embolus_nodes
    from PETriageSlicer.results import remove_results
    from PETriageSlicer.scene import nodes_by_class

    logic, ct, nodes = triaged
    add_embolus_nodes(ct, write_report_folder(tmp_path / "report", *clot_study), nodes.table)
    assert len(nodes_by_class(ct.GetScene(), "vtkMRMLSegmentationNode")) == 1
    assert remove_results(ct)
    assert not nodes_by_class(ct.GetScene(), "vtkMRMLSegmentationNode")
    assert not [n for n in nodes_by_class(ct.GetScene(), "vtkMRMLScalarVolumeNode") if n is not ct]
    assert ct.GetAttribute("PETriage.clotVolumeMl") is None  # the clot went with its run


def test_the_child_process_hands_the_report_folder_back(scene, clot_study, tiny_models):
    """The panel's path: the child triages, its job folder's report/ (written there by the child when a
    segmentation ran; placed here as the contract has it) is loaded on publish, before the folder goes."""
    from PETriageSlicer.embolus_report import REPORT_SUBFOLDER
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.navigation import table_column

    logic = PETriageSceneLogic(scene)
    series, mask = clot_study
    ct = logic.load_dicom(str(series))
    job = logic.start_triage(ct, TriageSettings(*tiny_models, device="cpu", cam="none", domain_check="off"))
    assert job.wait(300) == 0, job.process.tail()
    assert not (job.dir / REPORT_SUBFOLDER).exists()  # the tiny cascade segments nothing: no folder
    write_report_folder(job.dir / REPORT_SUBFOLDER, series, mask)
    nodes = job.publish()
    assert not job.dir.exists()
    assert nodes.embolus.segmentation.GetNodeReference("PETriageInput") is ct
    assert sum(table_column(nodes.table, "clot_ml")) == pytest.approx(nodes.embolus.volume_ml, rel=1e-9)
    assert nodes.embolus.volume_ml == pytest.approx(mask.sum() * np.prod(ct.GetSpacing()) / 1000.0, rel=1e-9)


def test_the_console_loads_a_report_folder_for_a_triaged_ct(triaged, clot_study, tmp_path):
    logic, ct, nodes = triaged
    found = logic.load_embolus_report(ct, str(write_report_folder(tmp_path / "report", *clot_study)))
    assert study_item(found.segmentation) == study_item(ct)
    assert ct.GetAttribute("PETriage.clotSummary") == found.summary


def test_a_result_with_an_embolus_goes_through_the_library_report_writer(scene, clot_study, tiny_models):
    """In-process, a TriageResult carrying an EmbolusResult (issue #24's library side, branch e24) is
    written by PETriageLib's own report writer and loaded back: the same folder `petriage triage` writes."""
    embolus = pytest.importorskip("PETriageLib.triage.embolus", reason="the library's EmbolusResult is not here yet")
    import dataclasses

    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    series, mask = clot_study
    ct = logic.load_dicom(str(series))
    task = logic.prepare(ct, TriageSettings(*tiny_models, device="cpu", cam="none", domain_check="off"))
    task.compute()
    probability = np.where(mask > 0, 0.8, 0.1).astype(np.float32)
    result = embolus.embolus_result("test-embolus-head", "ctpa", 0.5, probability, task.result.volume)
    task.result = dataclasses.replace(task.result, embolus=result)
    nodes = task.publish()
    assert nodes.embolus.slices == result.slices
    assert nodes.embolus.volume_ml == pytest.approx(result.volume_ml, rel=1e-6)
    np.testing.assert_array_equal(scene_labelmap_array(nodes.embolus.segmentation, ct), mask > 0)


def scene_labelmap_array(seg, ct):
    import slicer

    return slicer.util.arrayFromVolume(scene_labelmap(seg, ct)) > 0


def test_settings_with_a_segmentation_model_give_a_segment_from_a_real_run(scene, clot_study, tiny_models,
                                                                         embolus_checkpoints):
    """The panel's segmentation choice reaches the cascade: a model thresholded at 0 (every voxel is
    clot) run from TriageSettings gives one segment covering the CT, its volume the CT's."""
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(clot_study[0]))
    settings = TriageSettings(*tiny_models, device="cpu", cam="none", domain_check="off",
                              seg_model=str(embolus_checkpoints["seg_all"]))
    nodes = logic.run(ct, settings)
    dims = ct.GetImageData().GetDimensions()
    assert nodes.embolus.slices == list(range(dims[2]))
    assert nodes.embolus.volume_ml == pytest.approx(np.prod(dims) * np.prod(ct.GetSpacing()) / 1000.0, rel=1e-6)
    assert scene_labelmap_array(nodes.embolus.segmentation, ct).all()
    import dataclasses

    assert dataclasses.replace(settings, seg_model=None).cascade_key() != settings.cascade_key()  # rebuilt
