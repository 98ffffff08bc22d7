"""Report files: heatmap geometry equals the input series', slice CSV order, JSON, images, worklist."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import SimpleITK as sitk


from PETriageLib.explain.heatmaps import Heatmaps
from PETriageLib.ingest.load import load_series
from PETriageLib.reporting.heatmap_files import heatmap_image
from PETriageLib.reporting.report import write_report
from PETriageLib.reporting.slices_csv import write_slices_csv
from PETriageLib.reporting.worklist_csv import write_worklist_csv
from PETriageLib.triage.options import CascadeOptions
from PETriageLib.triage.result import TriageResult
from PETriageLib.triage.stages import ModelInfo
from PETriageLib.triage.verdict import SliceRow, label_slice, patient_verdict
from PETriageLib.triage.worklist import WorklistEntry, rank_worklist

WINDOWS = [{"name": "vascular", "level": 300.0, "width": 2600.0}, {"name": "lung", "level": -400.0, "width": 1500.0}]


@pytest.fixture(scope="module")
def volume(phantom_series_dir):
    return load_series(phantom_series_dir)


def sitk_reference(volume):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(volume.file_paths))
    return reader.Execute()


def controlled_result(volume) -> TriageResult:
    n = volume.num_slices
    p1 = np.linspace(0.1, 0.9, n)
    p2 = np.linspace(0.9, 0.2, n)
    rows = []
    for k in range(n):
        lung = 0 < k < n - 1
        pd, pp = (float(p1[k]), float(p2[k]) if p1[k] >= 0.5 else None) if lung else (None, None)
        rows.append(SliceRow(k, float(volume.z_positions[k]), volume.instance_uids[k], lung, lung, pd, pp,
                             label_slice(pd, pp, 0.5, 0.5)))
    models = [ModelInfo(stage=s, name=f"m{s}", path=None, sha256="0" * 64, architecture="cbamdrn_d22",
                        windows=WINDOWS, input_size=160, crop="dynamic", class_names=None, threshold=0.5,
                        version=None, domain_threshold=None) for s in (1, 2)]
    return TriageResult(rows=rows, verdict=patient_verdict(rows), volume=volume, models=models,
                        options=CascadeOptions(), timings={"stage1": 1.0})


def controlled_heatmaps(volume) -> Heatmaps:
    n = volume.num_slices
    k = [n // 2, n // 2 + 1]
    heat = {b: np.zeros(volume.shape, np.float32) for b in ("vascular", "lung")}
    for b in heat:
        heat[b][k, 40:60, 30:50] = 1.0
    return Heatmaps(heat, stage=2, model="m2", target="pe", slices=k, windows=WINDOWS, seconds=0.5)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_heatmap_files_have_the_input_series_geometry(volume, tmp_path, suffix):
    ref = sitk_reference(volume)
    heat = np.random.default_rng(0).random(volume.shape).astype(np.float32)
    path = tmp_path / f"h{suffix}"
    sitk.WriteImage(heatmap_image(heat, volume), str(path))
    back = sitk.ReadImage(str(path))
    assert back.GetSize() == ref.GetSize()
    assert np.allclose(back.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    assert np.allclose(back.GetOrigin(), ref.GetOrigin(), atol=1e-3)
    assert np.allclose(back.GetDirection(), ref.GetDirection(), atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(back), heat)
    with pytest.raises(ValueError, match="differs from the series shape"):
        heatmap_image(heat[1:], volume)


def test_slices_csv_is_in_anatomical_order(volume, tmp_path):
    rows = controlled_result(volume).rows
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    write_slices_csv(shuffled, tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as f:
        got = list(csv.DictReader(f))
    assert [int(r["index"]) for r in got] == list(range(volume.num_slices))
    z = [float(r["z"]) for r in got]
    assert z == sorted(z)
    assert got[0]["p_disease"] == "" and got[0]["label"] == "" and got[0]["analysable"] == "False"
    last_lung = got[-2]
    assert float(last_lung["p_disease"]) == pytest.approx(rows[-2].p_disease, abs=1e-6)


def test_write_report_files_and_json(volume, tmp_path):
    result = controlled_result(volume)
    heatmaps = controlled_heatmaps(volume)
    k, heat = heatmaps.slices, heatmaps.volumes
    before = result.to_dict()
    files = write_report(result, tmp_path, heatmaps=heatmaps)
    assert result.to_dict() == before  # the report reads the result, never changes it
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["patient"]["verdict"] == result.verdict.verdict
    assert len(data["slices"]) == volume.num_slices
    assert data["series"]["shape"] == list(volume.shape)
    assert data["timings_s"]["writing"] > 0 and data["timings_s"]["stage1"] == 1.0
    assert data["timings_s"]["gradcam"] == 0.5 and "writing" not in result.timings
    assert data["files"]["heatmaps"] == ["heatmap_vascular.nrrd", "heatmap_lung.nrrd"]
    assert data["gradcam"]["slices"] == k
    assert len(files.key_images) == 2
    import matplotlib.image

    png = matplotlib.image.imread(files.key_images[0])
    assert png.ndim == 3 and png.shape[0] > 100 and png.std() > 0.05
    summary = (tmp_path / "summary.md").read_text()
    assert result.verdict.verdict.replace("_", " ") in summary and "heatmap_lung.nrrd" in summary
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "heatmap_lung.nrrd")))
    assert np.array_equal(back, heat["lung"])


def test_report_without_heatmaps_or_analysis(volume, tmp_path):
    result = controlled_result(volume)
    result.verdict = patient_verdict(result.rows, not_analysable_reason="too few slices")
    files = write_report(result, tmp_path)
    assert not files.heatmaps and not files.key_images
    data = json.loads(files.report_json.read_text())
    assert set(data["files"]) == {"slices_csv", "summary", "report_json"} and data["gradcam"] == {}
    assert data["patient"]["verdict"] == "not_analysable" and data["patient"]["reason"] == "too few slices"


def test_worklist_ranks_by_pe_score_with_problems_last(tmp_path):
    entries = [
        WorklistEntry("no_finding", None, pe_score=0.1, disease_score=0.3, series_uid="a"),
        WorklistEntry("error", "unreadable", series_uid="b"),
        WorklistEntry("pe_suspected", None, pe_score=0.95, disease_score=0.9, series_uid="c"),
        WorklistEntry("other_disease", None, pe_score=0.4, disease_score=0.8, series_uid="d"),
        WorklistEntry("not_analysable", "not CT", series_uid="e"),
    ]
    ranked = rank_worklist(entries)
    write_worklist_csv(ranked, tmp_path / "w.csv")
    assert [e.series_uid for e in ranked] == ["c", "d", "a", "b", "e"] and [e.rank for e in ranked] == [1, 2, 3, 4, 5]
    with open(tmp_path / "w.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[0]["verdict"] == "pe_suspected" and rows[3]["reason"] == "unreadable" and rows[3]["pe_score"] == ""


def test_worklist_ranks_by_the_patient_classifier_where_it_ran(tmp_path):
    entries = [
        WorklistEntry("pe_suspected", None, pe_score=0.9, patient_probability=0.4, series_uid="a"),
        WorklistEntry("pe_suspected", None, pe_score=0.2, patient_probability=0.8, series_uid="b"),
        WorklistEntry("not_analysable", None, series_uid="c"),
    ]
    ranked = rank_worklist(entries)
    write_worklist_csv(ranked, tmp_path / "w.csv")
    assert [e.series_uid for e in ranked] == ["b", "a", "c"]
    with open(tmp_path / "w.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["patient_probability"] for r in rows] == ["0.800000", "0.400000", ""]
