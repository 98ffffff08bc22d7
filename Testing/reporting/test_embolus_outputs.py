"""The issue #24 embolus outputs of `petriage triage --seg-model`: embolus_probability/embolus_mask on
the CT's grid (a phantom and a real series), report.json's "phase"/"embolus", the summary's clot
line, worklist.csv's clot columns, and the mask as a DICOM SEG that dciodvfy accepts and that reads
back frame for frame."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from PETriageLib.cli import main
from PETriageLib.ingest.load import load_series
from PETriageLib.reporting.dicom_seg import build_embolus_seg
from PETriageLib.reporting.dicom_source import read_source
from PETriageLib.reporting.report import write_report
from PETriageLib.triage.cascade import build_cascade
from PETriageLib.triage.embolus import REPORT_KEYS, embolus_result
from support.dciodvfy import dciodvfy

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


def _triage(series, out, *extra):
    return main(["-q", "triage", str(series), "--out", str(out), "--device", "cpu", "--top-k", "1",
                 "--domain-check", "off", *extra])


def _assert_on_ct_grid(path: Path, volume, dtype) -> np.ndarray:
    img = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(img)
    assert array.shape == volume.hu.shape and array.dtype == dtype
    assert np.allclose(img.GetSpacing(), volume.spacing) and np.allclose(img.GetOrigin(), volume.origin)
    assert np.allclose(np.reshape(img.GetDirection(), (3, 3)), volume.direction)
    return array


@pytest.fixture(scope="module")
def seg_run(phantom_series_dir, tiny_checkpoints, embolus_checkpoints, tmp_path_factory):
    """The phantom triaged with a segmentation model that calls every voxel clot (threshold 0)."""
    root = tmp_path_factory.mktemp("seg_run")
    assert _triage(phantom_series_dir, root / "reports", "--models", *map(str, tiny_checkpoints),
                   "--seg-model", str(embolus_checkpoints["seg_all"]), "--dicom-out", str(root / "dicom")) == 0
    (row,) = list(csv.DictReader((root / "reports" / "worklist.csv").open()))
    return root, row, Path(row["report_dir"])


def test_report_folder_holds_the_maps_on_the_ct_grid(seg_run, phantom_series_dir):
    _, _, folder = seg_run
    volume = load_series(phantom_series_dir)
    prob = _assert_on_ct_grid(folder / "embolus_probability.nrrd", volume, np.float32)
    mask = _assert_on_ct_grid(folder / "embolus_mask.nrrd", volume, np.uint8)
    assert 0 <= prob.min() and prob.max() <= 1 and mask.all()  # threshold 0: all clot


def test_report_json_summary_and_worklist_carry_the_clot(seg_run, phantom_series_dir):
    _, row, folder = seg_run
    volume = load_series(phantom_series_dir)
    report = json.loads((folder / "report.json").read_text())
    whole_ml = np.prod(volume.hu.shape) * np.prod(volume.spacing) / 1000
    e = report["embolus"]
    assert tuple(e) == REPORT_KEYS  # the keys the Slicer module reads back
    assert e["model"] == "seg_all.pt" and e["pathway"] == "ctpa" and e["threshold"] == 0.0
    assert e["volume_ml"] == pytest.approx(whole_ml, rel=1e-4) and e["n_components"] == 1
    assert e["slices"] == list(range(volume.num_slices)) and 0 < e["max_probability"] <= 1
    assert e["files"] == {"probability": "embolus_probability.nrrd", "mask": "embolus_mask.nrrd"}
    assert report["phase"]["requested"] == "auto" and report["phase"]["used"] == "ctpa"
    assert report["phase"]["measured_blood_hu"] == report["contrast_phase"]["blood_hu"]
    assert report["files"]["embolus"] == ["embolus_probability.nrrd", "embolus_mask.nrrd"]
    last = volume.num_slices - 1
    line = f"- Clot volume: {e['volume_ml']:.1f} mL on slices 0-{last} ({volume.num_slices} slices)"
    assert line in (folder / "summary.md").read_text().splitlines()
    assert float(row["clot_volume_ml"]) == pytest.approx(e["volume_ml"]) and row["clot_slices"] == f"0-{last}"


def test_dicom_seg_passes_dciodvfy_and_references_the_source(seg_run, phantom_series_dir):
    root, _, folder = seg_run
    seg_path = root / "dicom" / folder.name / "embolus_seg.dcm"
    check = dciodvfy(seg_path)
    assert check.errors == [], check.output
    seg = hd.seg.segread(seg_path)
    src = [pydicom.dcmread(p, stop_before_pixels=True) for p in load_series(phantom_series_dir).file_paths]
    assert seg.StudyInstanceUID == src[0].StudyInstanceUID and seg.Modality == "SEG"
    referenced = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in src}
    assert seg.SegmentSequence[0].SegmentLabel == "Embolus" and len(seg.SegmentSequence) == 1


def test_dicom_seg_frames_equal_a_shaped_mask(phantom_study, phantom_series_dir, tiny_checkpoints, tmp_path):
    """A clot blob on some slices only: each source slice's frame read back equals the mask's slice."""
    volume = load_series(phantom_series_dir)
    result = build_cascade(tiny_checkpoints[0], tiny_checkpoints[1], device="cpu", min_slices=10,
                           domain_check="off").run(volume)
    prob = np.zeros(volume.hu.shape, np.float32)
    prob[5:9, 40:60, 50:70] = 0.9
    prob[6, 45:50, 55:58] = 0.2  # a hole below the threshold
    result = replace(result, embolus=embolus_result("blob", "ctpa", 0.5, prob, volume))
    path = tmp_path / "seg.dcm"
    build_embolus_seg(result, read_source(volume)).save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []
    seg = hd.seg.segread(path)
    uids = [str(u) for u in volume.instance_uids]
    back = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0]
    assert back.shape == volume.hu.shape and np.array_equal(back, result.embolus.mask)
    assert result.embolus.slices == [5, 6, 7, 8] and result.embolus.n_components == 1


def test_a_mask_of_another_shape_is_refused_for_dicom(phantom_series_dir, tiny_checkpoints, embolus_checkpoints):
    from PETriageLib.errors import NotAnalysableError

    volume = load_series(phantom_series_dir)
    result = build_cascade(tiny_checkpoints[0], tiny_checkpoints[1], device="cpu", min_slices=10, domain_check="off",
                           seg_model=embolus_checkpoints["seg_own"]).run(volume)
    bad = replace(result, embolus=replace(result.embolus, mask=result.embolus.mask[1:]))
    with pytest.raises(NotAnalysableError, match=r"embolus mask has shape \(15, 128, 128\).*another geometry"):
        build_embolus_seg(bad, read_source(volume))


def test_without_seg_model_the_clot_columns_are_empty_and_embolus_null(phantom_series_dir, tiny_checkpoints, tmp_path):
    assert _triage(phantom_series_dir, tmp_path, "--models", *map(str, tiny_checkpoints)) == 0
    (row,) = list(csv.DictReader((tmp_path / "worklist.csv").open()))
    assert row["clot_volume_ml"] == "" and row["clot_slices"] == ""
    folder = Path(row["report_dir"])
    report = json.loads((folder / "report.json").read_text())
    assert report["embolus"] is None and report["phase"]["used"] == "ctpa"
    assert not list(folder.glob("embolus_*")) and "Clot volume" not in (folder / "summary.md").read_text()
    assert {"phase", "seg_model", "nct_model"}.isdisjoint(report["options"])


def test_real_non_contrast_series_gets_nct_maps_on_its_grid(real_series_dir, tiny_checkpoints, embolus_checkpoints,
                                                            tmp_path):
    volume = load_series(real_series_dir)
    result = build_cascade(tiny_checkpoints[0], tiny_checkpoints[1], device="cpu", domain_check="off",
                           nct_model=embolus_checkpoints["nct_none"]).run(volume)
    files = write_report(result, tmp_path, nifti=True)
    report = json.loads(files.report_json.read_text())
    assert report["phase"]["used"] == "nct" and report["phase"]["measured_blood_hu"] < 110
    assert report["embolus"]["pathway"] == "nct" and report["embolus"]["volume_ml"] == 0.0
    assert report["embolus"]["files"]["mask"] == "embolus_mask.nii.gz"
    _assert_on_ct_grid(tmp_path / "embolus_probability.nii.gz", volume, np.float32)
    assert not _assert_on_ct_grid(tmp_path / "embolus_mask.nii.gz", volume, np.uint8).any()
    assert "- No clot segmented" in files.summary.read_text().splitlines()
