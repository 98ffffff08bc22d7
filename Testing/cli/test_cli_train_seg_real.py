"""`petriage train-seg --anatomy real`: trains on real-anatomy pairs, prints the volume and per-level
tables, stores the validation operating point and pixel size in the checkpoint, writes evaluation.json
and tables.md, resumes; `petriage ship-seg` registers the run with a card made of those scores."""
from __future__ import annotations

import json
import logging

import pytest

from PETriageLib.cli import main
from PETriageLib.errors import CheckpointError
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
from Testing.support.data_paths import CADPE_VESSELS

pytestmark = pytest.mark.skipif(not CADPE_VESSELS.is_dir(), reason=f"real CAD-PE masks not found at {CADPE_VESSELS}")

ARGS = ["-q", "train-seg", "--anatomy", "real", "--model", "resunet", "--train-patients", "1",
        "--validation-patients", "1", "--eval-patients", "1", "--steps", "3", "--pixel-mm", "3.0",
        "--slice-thickness", "5", "--patch", "32", "--cases-dir", str(CADPE_VESSELS)]


def test_real_anatomy_training_tables_checkpoint_resume_and_ship(tmp_path, capsys, caplog, monkeypatch) -> None:
    out = tmp_path / "models"
    assert main(ARGS + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| resunet on CTPA |" in printed and "| resunet on NCT |" in printed
    assert "Patient sens. (%, 95% CI)" in printed and "subsegmental: found / recall (%)" in printed
    _, meta = load_seg_checkpoint(out / "resunet.pt")
    assert meta["pixel_mm"] == 3.0 and meta["min_component_ml"] >= 0.0 and 0.0 < meta["threshold"] < 1.0
    assert meta["training"]["train_cases"] == ["001"]
    evaluation = json.loads((out / "evaluation.json").read_text())
    (run,) = evaluation["runs"]
    assert run["label"] == "resunet" and run["checkpoint"] == "resunet.pt" and sorted(run["test"]) == ["ctpa", "nct"]
    for ev in run["test"].values():  # one held-back case, once with and once without clots
        assert (ev["patients_positive"], ev["patients_negative"]) == (1, 1) and ev["clots"] >= 1
        assert ev["threshold"] == meta["threshold"] and ev["min_component_ml"] == meta["min_component_ml"]
    assert run["validation"]["threshold"] == meta["threshold"]
    assert [c for c, _, _ in evaluation["split"]["train"]] == ["001"] and len(evaluation["split"]["test"]) == 2
    assert (out / "tables.md").read_text().split("\n")[0] in printed  # the printed volume table's header
    before = (out / "resunet.pt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="PETriageLib.training.seg_real_run"):
        assert main(ARGS + ["--out", str(out)]) == 0
    assert "already trained" in caplog.text and (out / "resunet.pt").stat().st_mtime_ns == before

    _ship_the_run(out, tmp_path / "Resources", capsys, caplog, monkeypatch)


def _ship_the_run(out, resources, capsys, caplog, monkeypatch) -> None:
    """`petriage ship-seg` registers the run; its card's figures are evaluation.json's."""
    from PETriageLib.models.zoo import read_segmentation_models, verify_manifest
    from PETriageLib.triage.embolus import embolus_model_spec

    resources.mkdir()
    (resources / "models.json").write_text('{"models": []}')
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(resources))
    assert main(["ship-seg", str(out), "cpmn (full)", "cpmn_demo_nct"]) != 0
    assert "has no run 'cpmn (full)' (it has 'resunet')" in caplog.text
    capsys.readouterr()
    assert main(["ship-seg", str(out), "resunet", "resunet_demo"]) == 0
    assert "registered resunet_demo (segmentation)" in capsys.readouterr().out
    (entry,) = read_segmentation_models(resources)
    assert verify_manifest(resources) == [] and entry["file"] == "models/resunet_demo.pt"
    test = json.loads((out / "evaluation.json").read_text())["runs"][0]["test"]
    card = entry["card"]
    assert card["metrics"]["held_out_ctpa"]["dice"] == test["ctpa"]["dice"]
    assert card["metrics"]["held_out_nct"]["patient_sensitivity"] == test["nct"]["sensitivity_text"]
    assert "NOT for clinical use" in card["intended_use"] and "Synthetic" in card["training_data"]
    assert "FUSA" in card["metrics"]["paper"] and card["pixel_mm"] == 3.0
    assert embolus_model_spec("default", "ctpa") == "resunet_demo"  # --seg-model default
    with pytest.raises(CheckpointError, match="no cross_phase model is registered"):
        embolus_model_spec("default", "nct")  # --nct-model default: none registered
