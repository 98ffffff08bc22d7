"""`petriage triage --nct-model default` sends a non-contrast series to the registered non-contrast
(CPMN) model and says so in report.json; without it (or with `none`) the series goes to the CTPA
cascade with the non-contrast warning; `default` with no non-contrast model registered is refused."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from PETriageLib.cli import main
from PETriageLib.models.zoo import register_segmentation_model
from PETriageLib.phantom import generate_study, write_study

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")

CARD = {"intended_use": "test only", "training_data": "synthetic", "limits": "none tested", "metrics": {}}


@pytest.fixture(scope="module")
def nct_series(tmp_path_factory) -> Path:
    study = generate_study(3, matrix=96, slices=16, contrast="none", pe=False, other=False)
    return write_study(study, tmp_path_factory.mktemp("nct"))["series_dir"]


def _report(series, out, tiny_checkpoints, *extra) -> dict:
    assert main(["-q", "triage", str(series), "--out", str(out), "--device", "cpu", "--cam", "none",
                 "--domain-check", "off", "--models", *map(str, tiny_checkpoints), *extra]) == 0
    (row,) = list(csv.DictReader((out / "worklist.csv").open()))
    return json.loads((Path(row["report_dir"]) / "report.json").read_text())


def test_default_names_the_registered_nct_model_and_it_is_off_unless_asked(nct_series, tiny_checkpoints,
                                                                       embolus_checkpoints, tmp_path, monkeypatch):
    resources = tmp_path / "Resources"
    resources.mkdir()
    (resources / "models.json").write_text('{"models": []}')
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(resources))
    register_segmentation_model("nct_test", embolus_checkpoints["nct_all"], CARD)

    report = _report(nct_series, tmp_path / "default", tiny_checkpoints, "--nct-model", "default")
    assert report["phase"]["used"] == "nct" and "the non-contrast model" in report["phase"]["reason"]
    assert report["embolus"]["model"] == "nct_test" and report["embolus"]["pathway"] == "nct"
    assert report["patient"]["verdict"] == "pe_suspected"  # nct_all calls every voxel clot
    assert report["patient"]["rule"] == "non-contrast model: any predicted embolus component"

    for extra in ((), ("--nct-model", "none")):
        report = _report(nct_series, tmp_path / f"off{len(extra)}", tiny_checkpoints, *extra)
        assert report["phase"]["used"] == "ctpa" and report["embolus"] is None
        assert any("no non-contrast model was given (--nct-model)" in w for w in report["warnings"])


def test_default_without_a_registered_nct_model_is_refused_by_name(nct_series, tiny_checkpoints, tmp_path,
                                                                  monkeypatch, caplog):
    resources = tmp_path / "Resources"
    resources.mkdir()
    (resources / "models.json").write_text('{"models": []}')
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(resources))
    out = tmp_path / "refused"
    assert main(["-q", "triage", str(nct_series), "--out", str(out), "--device", "cpu", "--cam", "none",
                 "--domain-check", "off", "--models", *map(str, tiny_checkpoints), "--nct-model", "default"]) != 0
    assert "non-contrast model 'default': no cross_phase model is registered" in caplog.text
    assert not (out / "worklist.csv").exists()  # refused before any series is triaged
