"""One segment per finding class: `petriage triage --seg-model` with a ResUnet that segments the
embolus and other lung disease writes both classes' maps on the CT's grid, report.json's embolus
block carries the other class, summary.md says it, and in the scene the segmentation node gets an
"Other disease" segment beside "Embolus", its volume measured in the scene equal to report.json's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from PETriageLib.cli import main
from PETriageLib.ingest.load import load_series
from PETriageLib.models.registry import build_model
from PETriageLib.models.seg_checkpoint import save_seg_checkpoint
from PETriageLib.phantom import generate_study, write_study


@pytest.fixture(scope="module")
def lesion_model(tmp_path_factory) -> Path:
    """A two-class ResUnet whose head says "no clot" everywhere and "other disease" wherever the
    vascular window is bright (soft tissue and contrast): fixed weights, so the masks are known."""
    model = build_model("resunet", windows=("vascular", "lung"), width=0.125, classes=["pe", "other"]).eval()
    with torch.no_grad():
        model.decoder.head.weight.zero_()
        model.decoder.head.bias.copy_(torch.tensor([-20.0, 20.0]))
    return save_seg_checkpoint(tmp_path_factory.mktemp("lesion") / "lesions.pt", model, input_size=64,
                               threshold=0.5, class_points={"other": (0.5, 0.0)})


@pytest.fixture(scope="module")
def triaged_folder(lesion_model, tiny_models, tmp_path_factory) -> tuple[Path, Path]:
    study = generate_study(11, matrix=96, slices=12, pe=True, other=True, contrast="ctpa", difficulty="easy")
    series = write_study(study, tmp_path_factory.mktemp("study") / "s")["series_dir"]
    out = tmp_path_factory.mktemp("reports")
    assert main(["-q", "triage", str(series), "--out", str(out / "reports"), "--device", "cpu", "--top-k", "1",
                 "--domain-check", "off", "--models", *tiny_models, "--seg-model", str(lesion_model),
                 "--dicom-out", str(out / "dicom")]) == 0
    (folder,) = [p.parent for p in (out / "reports").rglob("report.json")]
    return series, folder


def test_triage_writes_every_class_on_the_ct_grid_and_reports_it(triaged_folder):
    series, folder = triaged_folder
    volume = load_series(series)
    whole_ml = float(np.prod(volume.hu.shape) * np.prod(volume.spacing)) / 1000
    report = json.loads((folder / "report.json").read_text())
    embolus = report["embolus"]
    assert embolus["volume_ml"] == 0.0 and embolus["slices"] == [] and "lesion" not in embolus
    other = embolus["other_lesions"]["other"]
    assert other["lesion"] == "other" and other["threshold"] == 0.5
    assert other["volume_ml"] == pytest.approx(whole_ml, rel=1e-6) and other["slices"] == list(range(volume.num_slices))
    assert other["files"] == {"probability": "other_disease_probability.nrrd", "mask": "other_disease_mask.nrrd"}
    for name in ("embolus_mask.nrrd", "other_disease_mask.nrrd", "other_disease_probability.nrrd"):
        image = sitk.ReadImage(str(folder / name))
        assert sitk.GetArrayFromImage(image).shape == volume.hu.shape
        assert np.allclose(image.GetOrigin(), volume.origin) and np.allclose(image.GetSpacing(), volume.spacing)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "other_disease_mask.nrrd"))).all()
    summary = (folder / "summary.md").read_text()
    assert "- No clot segmented" in summary
    assert (f"- Other lung disease (same model, p >= 0.5): {other['volume_ml']:.1f} mL on slices 0-"
            f"{volume.num_slices - 1} ({volume.num_slices} slices), 1 component(s)") in summary


def test_the_dicom_seg_has_one_segment_per_finding_class(triaged_folder):
    import pydicom

    series, folder = triaged_folder
    (path,) = (folder.parents[1] / "dicom").rglob("embolus_seg.dcm")
    seg = pydicom.dcmread(path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Embolus", "Other disease"]
    volume = load_series(series)
    frames = seg.pixel_array.reshape(2, volume.num_slices, *volume.hu.shape[1:])  # segment-major frames
    assert not frames[0].any() and frames[1].all()


def test_the_scene_gets_one_segment_per_finding_class(scene, triaged_folder, tiny_models):
    from PETriageSlicer.embolus_nodes import EMBOLUS_SEGMENT, LESION_SEGMENTS, add_embolus_nodes
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    series, folder = triaged_folder
    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(series))
    nodes = logic.run(ct, TriageSettings(*tiny_models, device="cpu", cam="none", domain_check="off"))
    found = add_embolus_nodes(ct, folder, nodes.table)
    segmentation = found.segmentation.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    assert ids == [EMBOLUS_SEGMENT, LESION_SEGMENTS["other"][0]]
    other = json.loads((folder / "report.json").read_text())["embolus"]["other_lesions"]["other"]
    assert found.other_ml["other"] == pytest.approx(other["volume_ml"], rel=1e-6)
    assert float(found.segmentation.GetAttribute("PETriage.otherDiseaseMl")) == pytest.approx(other["volume_ml"])
    assert found.volume_ml == 0.0
    assert found.lines == ["No clot segmented", f"Other disease (segmented): {other['volume_ml']:.1f} mL"]


def test_an_other_disease_mask_that_disagrees_with_the_report_is_refused(scene, triaged_folder, tiny_models,
                                                                         tmp_path):
    import shutil

    from PETriageSlicer.embolus_nodes import EmbolusRefused, add_embolus_nodes
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.scene import nodes_by_class

    series, folder = triaged_folder
    copy = tmp_path / "report"
    shutil.copytree(folder, copy)
    data = json.loads((copy / "report.json").read_text())
    data["embolus"]["other_lesions"]["other"]["volume_ml"] *= 0.5
    (copy / "report.json").write_text(json.dumps(data))
    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(series))
    nodes = logic.run(ct, TriageSettings(*tiny_models, device="cpu", cam="none", domain_check="off"))
    with pytest.raises(EmbolusRefused, match="the Other disease segment holds .* mL but report.json says"):
        add_embolus_nodes(ct, copy, nodes.table)
    assert not nodes_by_class(ct.GetScene(), "vtkMRMLSegmentationNode")
