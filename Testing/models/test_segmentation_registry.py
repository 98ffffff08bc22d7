"""Segmentation and non-contrast models in the manifest (Resources/models.json's
``segmentation_models``): registered with a card and SHA256, resolved by name, verified, refused when
the entry or the file is wrong, and each pathway's default taken from it (refused when there is none)."""
from __future__ import annotations

import json

import pytest

from PETriageLib.errors import CheckpointError
from PETriageLib.models.checkpoint import file_sha256
from PETriageLib.models.zoo import (read_manifest, read_segmentation_models, register_segmentation_model,
                                    resolve_segmentation_model, resolve_series_model, verify_manifest)
from PETriageLib.triage.embolus import default_embolus_model, embolus_model_spec, load_embolus_model

CARD = {"intended_use": "test only", "training_data": "synthetic", "limits": "none tested", "metrics": {}}


@pytest.fixture
def resources(tmp_path, monkeypatch, embolus_checkpoints):
    """A scratch Resources/ with a segmentation and a cross-phase model registered."""
    (tmp_path / "models.json").write_text('{"models": []}')
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(tmp_path))
    register_segmentation_model("seg_demo", embolus_checkpoints["seg_own"], CARD)
    register_segmentation_model("nct_demo", embolus_checkpoints["nct_all"], CARD)
    return tmp_path


def test_registered_models_resolve_with_their_task_and_digest(resources, embolus_checkpoints):
    entries = read_segmentation_models(resources)
    assert [(e["name"], e["task"]) for e in entries] == [("seg_demo", "segmentation"), ("nct_demo", "cross_phase")]
    assert [e["name"] for e in read_segmentation_models(resources, "cross_phase")] == ["nct_demo"]
    path, sha = resolve_segmentation_model("nct_demo", resources)
    assert path == resources / "models" / "nct_demo.pt"  # copied into Resources/ under its name
    assert sha == file_sha256(path) == file_sha256(embolus_checkpoints["nct_all"])
    assert resolve_segmentation_model(path, resources) == (path, sha)  # the registered file keeps its digest
    assert verify_manifest(resources) == []
    # re-registering a name replaces it in place
    register_segmentation_model("seg_demo", embolus_checkpoints["seg_all"], CARD)
    assert [e["name"] for e in read_segmentation_models(resources)] == ["seg_demo", "nct_demo"]
    assert read_manifest(resources)["models"] == []  # the classifiers' section is untouched


def test_the_pathways_load_registered_models_by_name(resources):
    model = load_embolus_model("nct_demo", "nct")
    assert model.meta["task"] == "cross_phase" and model.name == "nct_demo"
    with pytest.raises(CheckpointError, match="the nct pathway needs cross_phase"):
        load_embolus_model("seg_demo", "nct")
    with pytest.raises(CheckpointError, match="registered segmentation model named 'other'.*seg_demo, nct_demo"):
        load_embolus_model("other", "ctpa")


def test_default_models_come_from_the_manifest(resources):
    assert default_embolus_model("nct") == embolus_model_spec("default", "nct") == "nct_demo"
    assert default_embolus_model("ctpa") == embolus_model_spec("default", "ctpa") == "seg_demo"
    assert embolus_model_spec("none", "nct") is embolus_model_spec(None, "nct") is None
    assert embolus_model_spec("my.pt", "ctpa") == "my.pt"


def test_without_a_registered_model_of_its_task_the_default_is_refused(tmp_path, monkeypatch, embolus_checkpoints):
    (tmp_path / "models.json").write_text('{"models": []}')
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(tmp_path))
    with pytest.raises(CheckpointError, match="^non-contrast model 'default': no cross_phase model is registered"):
        embolus_model_spec("default", "nct")  # asked for: never a silent fallback to the CTPA cascade
    with pytest.raises(CheckpointError, match="^segmentation model 'default': no segmentation model is registered"):
        embolus_model_spec("default", "ctpa")
    # a segmentation model serves CTPA only: the non-contrast default is still refused
    register_segmentation_model("seg_only", embolus_checkpoints["seg_own"], CARD)
    assert embolus_model_spec("default", "ctpa") == "seg_only"
    with pytest.raises(CheckpointError, match="no cross_phase model is registered"):
        embolus_model_spec("default", "nct")
    assert embolus_model_spec("none", "nct") is None


def test_a_series_model_entry_without_its_keys_is_a_checkpoint_error(tmp_path):
    entry = {"name": "refiner", "type": "slice_refiner", "file": "models/refiner.pt"}  # no sha256
    (tmp_path / "models.json").write_text(json.dumps({"models": [], "series_models": [entry]}))
    with pytest.raises(CheckpointError, match=r"series model entry \{'name': 'refiner'.* lacks the keys \['sha256'\]"):
        resolve_series_model("refiner", tmp_path)
    (tmp_path / "models.json").write_text(json.dumps({"models": [], "series_models": ["refiner.pt"]}))
    with pytest.raises(CheckpointError, match=r"entry 'refiner.pt' lacks the keys \['name', 'file', 'sha256'\]"):
        resolve_series_model("refiner", tmp_path)


def test_a_damaged_file_or_a_bad_entry_is_reported(resources):
    path, sha = resolve_segmentation_model("seg_demo", resources)
    path.write_bytes(path.read_bytes() + b"x")
    assert verify_manifest(resources) == [f"seg_demo: {path} does not match its SHA256 {sha}"]
    with pytest.raises(CheckpointError, match="SHA256"):
        load_embolus_model("seg_demo", "ctpa")
    data = json.loads((resources / "models.json").read_text())
    data["segmentation_models"][1]["task"] = "classification"
    (resources / "models.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="'nct_demo' has task 'classification'"):
        read_segmentation_models(resources)


def test_a_classifier_is_not_registered_as_a_segmentation_model(tmp_path, tiny_checkpoints):
    (tmp_path / "models.json").write_text('{"models": []}')
    with pytest.raises(CheckpointError, match="not an embolus segmentation model"):
        register_segmentation_model("wrong", tiny_checkpoints[0], CARD, resources=tmp_path)
    assert read_segmentation_models(tmp_path) == []


def test_the_shipped_demo_models_load_and_their_cards_match_their_checkpoints(monkeypatch):
    """Resources/models.json as committed: both pathways' defaults load by name, and each card's
    operating point is the one stored in its checkpoint (what triage applies)."""
    monkeypatch.delenv("PETRIAGE_RESOURCES", raising=False)
    entries = read_segmentation_models()
    if not entries:
        pytest.skip("no segmentation model registered in Resources/models.json")
    assert verify_manifest() == []
    for pathway in ("ctpa", "nct"):
        name = default_embolus_model(pathway)
        model = load_embolus_model(name, pathway)
        card = next(e["card"] for e in entries if e["name"] == name)
        assert (card["threshold"], card["min_component_ml"], card["pixel_mm"]) == (
            model.meta["threshold"], model.meta["min_component_ml"], model.meta["pixel_mm"])
        assert "NOT for clinical use" in card["intended_use"] and card["metrics"]["paper"]
    assert load_embolus_model(default_embolus_model("nct"), "nct").meta["task"] == "cross_phase"
