"""Checkpoints and the model manifest: round trip, and refusal of unsafe or unfitting files."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from PETriageLib import __version__
from PETriageLib.errors import CheckpointError
from PETriageLib.models import build_model, load_checkpoint, register_model, resolve_model, save_checkpoint
from PETriageLib.models.checkpoint import FORMAT, file_sha256, write_checkpoint
from PETriageLib.models.zoo import read_manifest, resources_dir, verify_manifest

META = {"input_size": 64, "class_names": ["wnl", "disease"], "threshold": 0.3, "training": {"slices": 10}}
CARD = {"intended_use": "tests", "training_data": "none", "limits": "random weights", "metrics": {}}


class Payload:
    """An arbitrary Python object: unpickling it would need code import, which must be refused."""


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


@pytest.fixture()
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model("cbamdrn_d22", windows=("vascular", "lung"), width=0.125)
    with torch.no_grad():  # non-default BN statistics must survive the round trip too
        m.train()(torch.randn(4, 2, 64, 64))
    return m.eval()


@pytest.fixture()
def ckpt(tmp_path: Path, model) -> Path:
    return save_checkpoint(tmp_path / "m.pt", model, META)


def _raw(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_round_trip_identical_outputs_and_meta(model, ckpt: Path) -> None:
    loaded, meta = load_checkpoint(ckpt, expected_sha256=file_sha256(ckpt))
    x = torch.randn(3, 2, 80, 80)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert (loaded.name, loaded.windows, loaded.config) == (model.name, model.windows, model.config)
    assert meta["architecture"] == "cbamdrn_d22" and meta["config"] == {"width": 0.125, "dropout": 0.0, "pool": "avg"}
    assert meta["windows"] == [{"name": "vascular", "level": 300.0, "width": 2600.0},
                               {"name": "lung", "level": -400.0, "width": 1500.0}]
    assert meta["threshold"] == 0.3 and meta["class_names"] == ["wnl", "disease"]
    assert meta["version"] == __version__ and meta["created"].startswith("20") and meta["crop"] == "dynamic"
    raw = _raw(ckpt)
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    json.dumps(raw["meta"])


def test_custom_window_presets_are_stored(tmp_path: Path) -> None:
    model = build_model("drn_d22", windows=("pe",), width=0.125)
    wide = {"name": "pe", "level": 150.0, "width": 900.0}
    path = save_checkpoint(tmp_path / "pe.pt", model, {**META, "windows": [wide]})
    assert load_checkpoint(path)[1]["windows"] == [wide]
    with pytest.raises(ValueError, match="windows"):
        save_checkpoint(tmp_path / "x.pt", model, {**META, "windows": ["lung"]})


def test_tampered_file_refused(ckpt: Path) -> None:
    sha = file_sha256(ckpt)
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA256"):
        load_checkpoint(ckpt, expected_sha256=sha)


def test_pickle_payload_refused(tmp_path: Path, ckpt: Path) -> None:
    raw = _raw(ckpt)
    raw["meta"]["training"] = Payload()
    evil = tmp_path / "evil.pt"
    torch.save(raw, evil)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="weights-only"):  # even with the right SHA256
        load_checkpoint(evil, expected_sha256=file_sha256(evil))


def test_wrong_architecture_refused(tmp_path: Path, ckpt: Path) -> None:
    cases = {
        "drn_d22": {"architecture": "drn_d22"},  # CBAM weights unexpected
        "width": {"config": {"width": 0.25, "dropout": 0.0}},  # shape mismatch
        "window": {"windows": [{"name": "lung", "level": -400.0, "width": 1500.0}]},  # one branch fewer
        "unknown": {"architecture": "vgg11"},
        "config": {"config": {"width": 0.125, "depth": 3}},
    }
    for label, change in cases.items():
        raw = _raw(ckpt)
        raw["meta"].update(change)
        path = tmp_path / f"{label}.pt"
        write_checkpoint(path, raw)  # a fresh digest: the check under test fires, not the digest's
        with pytest.raises(CheckpointError, match="does not describe|do not fit") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)


def test_format_and_version_refused(tmp_path: Path, ckpt: Path) -> None:
    major = int(__version__.split(".")[0])
    for label, change, message in (
        ("fmt", {"format_version": 2}, "format_version"),
        ("other", {"format": "something-else"}, "not a PETriage checkpoint"),
        ("major", {"meta": {**_raw(ckpt)["meta"], "version": f"{major + 1}.0.0"}}, "major"),
    ):
        raw = _raw(ckpt)
        raw.update(change)
        path = tmp_path / f"{label}.pt"
        write_checkpoint(path, raw)  # a fresh digest: the check under test fires, not the digest's
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(tmp_path / "junk.pt")


def test_incomplete_meta_refused_on_save(tmp_path: Path, model) -> None:
    with pytest.raises(ValueError, match="input_size"):
        save_checkpoint(tmp_path / "a.pt", model, {"class_names": ["a", "b"]})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "b.pt", model, {**META, "training": {"when": object()}})
    assert not list(tmp_path.iterdir())


def test_manifest_register_resolve_verify(tmp_path: Path, ckpt: Path) -> None:
    res = tmp_path / "Resources"
    res.mkdir()
    entry = register_model("stage1-demo", 1, ckpt, CARD, resources=res)
    assert entry["file"] == "models/m.pt" and entry["sha256"] == file_sha256(ckpt)
    path, sha = resolve_model("stage1-demo", res)
    assert path == res / "models" / "m.pt" and sha == entry["sha256"]
    assert resolve_model(path, res) == (path, sha)  # the shipped file by path keeps its SHA256
    assert resolve_model(ckpt, res) == (ckpt, None)  # an outside file: no SHA256 to check
    assert verify_manifest(res) == []
    load_checkpoint(*resolve_model("stage1-demo", res))
    # Re-registering replaces the entry in place; a second model is appended.
    register_model("stage1-demo", 1, path, {**CARD, "limits": "v2"}, resources=res)
    register_model("stage2-demo", 2, ckpt, CARD, resources=res)
    models = read_manifest(res)["models"]
    assert [m["name"] for m in models] == ["stage1-demo", "stage2-demo"]
    assert models[0]["card"]["limits"] == "v2"
    # A changed file is reported by verify and refused by load.
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    assert len(verify_manifest(res)) == 2 and "SHA256" in verify_manifest(res)[0]
    with pytest.raises(CheckpointError, match="SHA256"):
        load_checkpoint(*resolve_model("stage1-demo", res))
    with pytest.raises(CheckpointError, match="stage2-demo"):
        resolve_model("nope", res)


def test_manifest_refuses_bad_entries(tmp_path: Path, ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="stage"):
        register_model("x", 3, ckpt, CARD, resources=tmp_path)
    with pytest.raises(CheckpointError, match="lacks"):
        register_model("x", 1, ckpt, {"intended_use": "x"}, resources=tmp_path)
    (tmp_path / "models.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_repository_manifest_is_valid(monkeypatch) -> None:
    monkeypatch.delenv("PETRIAGE_RESOURCES", raising=False)
    assert resources_dir() == Path(__file__).resolve().parents[2] / "Resources"
    assert isinstance(read_manifest()["models"], list)
    assert verify_manifest() == []
    monkeypatch.setenv("PETRIAGE_RESOURCES", os.fspath(Path("/somewhere/else")))
    assert resources_dir() == Path("/somewhere/else")


def test_shipped_files_name_no_module_path_and_load():
    """Checkpoints describe architectures and preprocessing by name, never by Python module path,
    so moving modules cannot break a file; every registered model loads and is SHA-checked."""
    import json
    import re

    from PETriageLib.models.series_checkpoint import load_series_model
    from PETriageLib.models.zoo import read_manifest
    from PETriageLib.triage.stages import load_stage

    data = read_manifest()
    for entry in data["models"]:
        stage = load_stage(entry["stage"], entry["name"])
        assert not re.search(r"PETriageLib\.\w", json.dumps(stage.meta, default=str)), entry["name"]
    for entry in data.get("series_models", []):
        model, meta = load_series_model(entry["name"], entry["type"])
        assert not re.search(r"PETriageLib\.\w", json.dumps(meta, default=str)), entry["name"]


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    from PETriageLib.atomic import atomic_write

    path = atomic_write(tmp_path / "a.json", lambda tmp: tmp.write_text("old"))

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
