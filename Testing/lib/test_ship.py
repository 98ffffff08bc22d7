"""Shipping demo models: the better run on validation is copied and registered, with a card that
describes the run from the checkpoint itself and quotes the test report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from PETriageLib.models import build_model, save_checkpoint
from PETriageLib.models.checkpoint import file_sha256
from PETriageLib.models.manifest import read_manifest
from PETriageLib.training.ship import best_by_validation, ship


def _run(work: Path, name: str, stage: int, val_auroc: float, **settings) -> Path:
    torch.manual_seed(len(name))
    model = build_model("cbamdrn_d22", windows=("pe", "lung"), width=0.125)
    classes = ["wnl", "disease"] if stage == 1 else ["other", "pe"]
    training = {"stage": stage, "best_epoch": 2, "val": {"val_auroc": val_auroc},
                "settings": {"epochs": 4, "steps_per_epoch": 10, "batch_size": 8, "lr": 2e-3,
                             "scheduler": "onecycle", **settings},
                "data": {"manifest": ["phantoms/manifest.csv"], "train": {"patients": {"pe": 3, "wnl": 2}}}}
    path = work / name / "best.pt"
    path.parent.mkdir(parents=True)
    return save_checkpoint(path, model.eval(), {"input_size": 64, "class_names": classes, "threshold": 0.4,
                                                "crop": "dynamic", "training": training})


def _report(work: Path) -> None:
    stage = {"accuracy": {"text": "50.0% (1/2)"}, "per_class": {"a": {"text": "100.0% (1/1)"}}, "auroc": {"auroc": 0.5}}
    (work / "test-report").mkdir()
    (work / "test-report" / "report.json").write_text(json.dumps(
        {"stage1": stage, "stage2": stage, "patient_tables": {"pe": [["PE (sensitivity)", "100.0% (1/1)"]]}}))


def test_ship_registers_the_better_run_with_an_honest_card(tmp_path, monkeypatch) -> None:
    resources = tmp_path / "Resources"
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(resources))
    work = tmp_path / "work"
    _run(work, "s1-plain", 1, 0.80)
    better1 = _run(work, "s1-mask", 1, 0.85, mask_loss_weight=1.0)
    better2 = _run(work, "s2-plain", 2, 0.90)
    _run(work, "s2-ft", 2, 0.70, init_from="s2-plain/best.pt")
    _report(work)

    entries = ship(work, ("s1-plain,s1-mask", "s2-plain,s2-ft"))

    assert [e["stage"] for e in entries] == [1, 2]
    for entry, source in zip(entries, (better1, better2)):
        shipped = resources / entry["file"]
        assert entry["sha256"] == file_sha256(shipped) == file_sha256(source)
    assert [m["name"] for m in read_manifest(resources)["models"]] == [e["name"] for e in entries]
    card1, card2 = entries[0]["card"], entries[1]["card"]
    assert "NOT for clinical use" in card1["intended_use"]
    assert "weights of epoch 2 of 4 (20 steps of batch 8, 160 slices)" in card1["limits"]
    assert "lesion-map loss weight 1" in card1["limits"] and "lesion-map" not in card2["limits"]
    assert card1["metrics"]["synthetic_test"]["slice_accuracy"] == "50.0% (1/2)"
    assert card1["metrics"]["validation"] == {"val_auroc": 0.85}
    assert "5 patients (3 pe, 2 wnl)" in card1["training_data"]


def test_best_by_validation_needs_every_candidate(tmp_path) -> None:
    _run(tmp_path, "a", 1, 0.8)
    with pytest.raises(Exception, match="best.pt"):
        best_by_validation([tmp_path / "a" / "best.pt", tmp_path / "b" / "best.pt"])
