"""`petriage triage` and `petriage demo` end to end, in process, with tiny models."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk


from PETriageLib.cli import main


def triage(path, out, ckpts, *extra) -> int:
    return main(["-q", "triage", str(path), "--out", str(out), "--models", str(ckpts[0]), str(ckpts[1]),
                 "--device", "cpu", *map(str, extra)])


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_real_series_report_rows_order_and_heatmap_geometry(real_series_dir, real_labels_csv, tiny_checkpoints,
                                                           tmp_path, capsys):
    assert triage(real_series_dir, tmp_path, tiny_checkpoints, "--top-k", 2, "--batch-size", 32) == 0
    work = read_csv(tmp_path / "worklist.csv")
    assert len(work) == 1 and work[0]["verdict"] in ("pe_suspected", "other_disease", "no_finding")
    out = tmp_path / work[0]["report_dir"].split("/")[-1]
    report = json.loads((out / "report.json").read_text())
    rows = report["slices"]
    assert len(rows) == 131
    z = [r["z"] for r in rows]
    assert z == sorted(z) and z[0] == pytest.approx(-322.1) and z[1] - z[0] == pytest.approx(2.0)
    # The dataset's labels list files in ascending SliceLocation: the same anatomical order.
    assert len(read_csv(real_labels_csv)) == len(rows)
    assert [int(r["index"]) for r in read_csv(out / "slices.csv")] == list(range(131))
    assert sum(r["has_lung"] for r in rows) > 60
    assert set(report["timings_s"]) >= {"reading", "preprocessing", "stage1", "stage2", "gradcam", "writing"}
    ref = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(real_series_dir)))
    for branch in ("vascular", "lung"):
        heat = sitk.ReadImage(str(out / f"heatmap_{branch}.nrrd"))
        assert heat.GetSize() == ref.GetSize() == (512, 512, 131)
        assert np.allclose(heat.GetSpacing(), ref.GetSpacing(), atol=1e-5)
        assert np.allclose(heat.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        assert np.allclose(heat.GetDirection(), ref.GetDirection(), atol=1e-6)
        arr = sitk.GetArrayFromImage(heat)
        assert set(np.flatnonzero(arr.reshape(131, -1).any(axis=1))) <= set(report["gradcam"]["slices"])
    assert len(report["gradcam"]["slices"]) == 2 and len(list(out.glob("key_*.png"))) == 2
    assert report["patient"]["verdict"] in capsys.readouterr().out


def test_folder_of_series_gives_a_ranked_worklist(phantom_series_dir, tiny_checkpoints, tmp_path):
    from pydicom.data import get_testdata_file

    src = tmp_path / "in"
    shutil.copytree(phantom_series_dir, src / "phantom")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct_single.dcm")
    assert triage(src, tmp_path / "out", tiny_checkpoints, "--cam", "none") == 0
    work = read_csv(tmp_path / "out" / "worklist.csv")
    assert len(work) == 3
    assert work[0]["verdict"] in ("pe_suspected", "other_disease", "no_finding") and work[0]["num_slices"] == "16"
    reasons = {w["verdict"]: w["reason"] for w in work[1:]}
    assert set(reasons) == {"not_analysable"}
    assert any("modality MR" in w["reason"] for w in work[1:])
    assert any("too few slices (1 < 10)" in w["reason"] for w in work[1:])
    assert [w["rank"] for w in work] == ["1", "2", "3"]
    first = tmp_path / "out" / work[0]["report_dir"].split("/")[-1]
    assert not list(first.glob("heatmap_*"))  # --cam none


def test_series_with_a_gap_is_not_analysable(phantom_series_dir, tiny_checkpoints, tmp_path):
    src = tmp_path / "gap"
    shutil.copytree(phantom_series_dir, src)
    files = sorted(src.iterdir())
    import pydicom

    by_z = sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    for p in by_z[6:9]:
        p.unlink()
    assert triage(src, tmp_path / "out", tiny_checkpoints) == 0
    work = read_csv(tmp_path / "out" / "worklist.csv")
    assert work[0]["verdict"] == "not_analysable" and "gap in the series" in work[0]["reason"]
    report = json.loads((tmp_path / "out" / work[0]["report_dir"].split("/")[-1] / "report.json").read_text())
    assert all(r["p_disease"] is None for r in report["slices"])


def test_folder_without_dicom_fails_with_a_clear_message(tiny_checkpoints, tmp_path, caplog):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not a DICOM file")
    assert triage(tmp_path / "in", tmp_path / "out", tiny_checkpoints) != 0
    assert str(tmp_path / "in") in caplog.text


def test_demo_with_models_registered_in_a_manifest(tiny_checkpoints, tmp_path, monkeypatch, capsys, caplog):
    """The demo path and default-model lookup, on a Resources folder holding the tiny models; without
    the shared CAD-PE cases the default real-anatomy study falls back to the formula phantom, warning."""
    from PETriageLib.models.zoo import register_model

    card = {"intended_use": "tests", "training_data": "none", "limits": "untrained", "metrics": {}}
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(tmp_path / "res"))
    monkeypatch.setenv("PETRIAGE_SHARED_DATA", str(tmp_path / "no-shared-data"))
    register_model("tiny-stage1", 1, tiny_checkpoints[0], card)
    register_model("tiny-stage2", 2, tiny_checkpoints[1], card)
    rc = main(["-q", "demo", "--out", str(tmp_path / "demo"), "--matrix", "128", "--slices", "16", "--seed", "3",
               "--cam", "none", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ground truth (formula anatomy, seed 3): pe" in out
    assert str(tmp_path / "demo" / "report" / "summary.md") in out
    assert "using the formula phantom instead" in caplog.text and "--anatomy formula" in caplog.text
    assert str(tmp_path / "no-shared-data" / "real" / "cadpe-vessels") in caplog.text
    report = json.loads((tmp_path / "demo" / "report" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["tiny-stage1", "tiny-stage2"]
    assert len(report["slices"]) == 16 and (tmp_path / "demo" / "study" / "labels.csv").is_file()


def test_demo_with_the_shipped_models(tmp_path, capsys):
    from PETriageLib.triage.stages import default_models
    from PETriageLib.errors import CheckpointError

    try:
        default_models()
    except CheckpointError as exc:
        pytest.skip(f"no shipped stage 1/2 models yet: {exc}")
    rc = main(["-q", "demo", "--anatomy", "formula", "--out", str(tmp_path), "--matrix", "256", "--slices", "40",
               "--top-k", "2", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "verdict: " in out and "ground truth (formula anatomy, seed 7): pe" in out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(report["slices"]) == 40 and report["patient"]["verdict"] != "not_analysable"
    assert (tmp_path / "study" / "labels.csv").is_file()


def test_triage_with_a_patient_classifier(phantom_series_dir, tiny_checkpoints, tmp_path):
    """--patient-model: its p(PE) decides the verdict and ranks the worklist (untrained weights:
    the test is about the wiring); one made for other stage models is refused."""
    import torch

    from PETriageLib.models.checkpoint import file_sha256
    from PETriageLib.models.series_nets import PatientClassifier
    from PETriageLib.training.series_models.patient import PatientTrainConfig, save_patient_classifier

    torch.manual_seed(0)
    stages = [{"sha256": file_sha256(p), "path": str(p)} for p in tiny_checkpoints]
    path = save_patient_classifier(tmp_path / "patient.pt", PatientClassifier(2, "maxpool", 8),
                                   PatientTrainConfig(features="scores"), {"threshold": 0.0}, stages)
    assert triage(phantom_series_dir, tmp_path / "out", tiny_checkpoints, "--cam", "none",
                  "--patient-model", path) == 0
    work = read_csv(tmp_path / "out" / "worklist.csv")
    assert work[0]["verdict"] == "pe_suspected" and 0 < float(work[0]["patient_probability"]) < 1
    out = tmp_path / "out" / work[0]["report_dir"].split("/")[-1]
    report = json.loads((out / "report.json").read_text())
    assert report["patient"]["rule"] == "patient classifier"
    assert report["patient"]["patient_probability"] == pytest.approx(float(work[0]["patient_probability"]), abs=1e-3)
    assert "Patient classifier p(PE)" in (out / "summary.md").read_text()
    other = save_patient_classifier(tmp_path / "other.pt", PatientClassifier(2, "maxpool", 8),
                                    PatientTrainConfig(features="scores"), {"threshold": 0.0},
                                    [{"sha256": "0" * 64, "path": "x"}] * 2)
    assert triage(phantom_series_dir, tmp_path / "out2", tiny_checkpoints, "--patient-model", other) != 0
