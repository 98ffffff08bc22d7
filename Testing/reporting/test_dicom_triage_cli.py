"""`petriage triage --dicom-out DIR`: the DICOM objects of a folder run, one folder per series,
carrying the verdict of the series' report.json."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pydicom

from PETriageLib.cli import main
from PETriageLib.reporting.dicom_sr import read_verdict


def test_dicom_out_writes_the_objects_of_every_triaged_series(phantom_series_dir, tiny_checkpoints, tmp_path):
    out, dicom = tmp_path / "reports", tmp_path / "dicom"
    assert main(["-q", "triage", str(phantom_series_dir), "--out", str(out), "--dicom-out", str(dicom),
                 "--models", *map(str, tiny_checkpoints), "--device", "cpu", "--top-k", "2",
                 "--domain-check", "off"]) == 0
    (row,) = list(csv.DictReader((out / "worklist.csv").open()))
    name = Path(row["report_dir"]).name
    report = json.loads((out / name / "report.json").read_text())
    files = sorted(p.name for p in (dicom / name).iterdir())
    assert files == ["heatmap_lung.dcm", "heatmap_vascular.dcm", "key_01.dcm", "key_02.dcm", "sr.dcm"]
    assert read_verdict(pydicom.dcmread(dicom / name / "sr.dcm")) == report["patient"]["verdict"] == row["verdict"]


def test_a_series_whose_dicom_results_cannot_be_written_does_not_stop_the_run(phantom_series_dir, tiny_checkpoints,
                                                                              tmp_path, caplog):
    """--dicom-out pointing at a file: the write fails for the series, the report and the worklist
    are still written, and the run says so and exits 1."""
    out, blocked = tmp_path / "reports", tmp_path / "not-a-folder"
    blocked.write_text("in the way")
    assert main(["-q", "triage", str(phantom_series_dir), "--out", str(out), "--dicom-out", str(blocked),
                 "--models", *map(str, tiny_checkpoints), "--device", "cpu", "--top-k", "1",
                 "--domain-check", "off"]) == 1
    (row,) = list(csv.DictReader((out / "worklist.csv").open()))
    assert row["verdict"] != "error" and (Path(row["report_dir"]) / "report.json").is_file()
    assert "DICOM results not written" in caplog.text
