"""The digest every written checkpoint carries: stable across save and load, a changed tensor byte or
meta value refused naming the file, files without one (shipped weights, earlier versions) still load."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from support.checkpoints import make_checkpoint
from support.docs_examples import python_block

from PETriageLib.errors import CheckpointError
from PETriageLib.models import load_checkpoint, resolve_model
from PETriageLib.models.checkpoint import content_digest, file_sha256, read_checkpoint, write_checkpoint
from PETriageLib.models.series_checkpoint import load_series_model, save_series_model
from PETriageLib.models.series_nets import SliceRefiner
from PETriageLib.models.zoo import read_manifest, resolve_series_model

ALTERED = "its contents do not match the digest stored in it: the file was altered or damaged"
NO_DIGEST = "carries no digest"
DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("digest") / "s1.pt", 1)


def _raw(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_digest_is_stored_and_stable_across_save_and_load(tmp_path, ckpt, caplog) -> None:
    data = read_checkpoint(ckpt)
    stored = data["digest"]
    assert stored["algorithm"] == "sha256" and len(stored["value"]) == 64
    assert content_digest(data) == stored["value"]
    again = write_checkpoint(tmp_path / "again.pt", data)  # the stored digest is left out of the new one
    assert _raw(again)["digest"] == stored
    with caplog.at_level(logging.WARNING):
        load_checkpoint(again)
    assert _warnings(caplog) == []
    data["meta"]["threshold"] = 0.25
    assert content_digest(data) != stored["value"]


def test_a_flipped_tensor_byte_in_the_file_is_refused_naming_it(tmp_path, ckpt) -> None:
    raw = _raw(ckpt)
    weight = raw["state_dict"]["fc.weight"]
    blob = bytearray(ckpt.read_bytes())
    at = blob.find(weight.numpy().tobytes())  # torch stores tensor bytes uncompressed in its zip
    assert at > 0
    blob[at + 5] ^= 0x01
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(blob))
    assert not torch.equal(_raw(bad)["state_dict"]["fc.weight"], weight)  # torch itself loads it
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError, match=ALTERED) as info:
            load(bad)
        assert str(bad) in str(info.value)


@pytest.mark.parametrize("label, edit", [
    ("meta", lambda raw: raw["meta"].update(threshold=0.4)),  # a valid value: only the digest can tell
    ("tensor", lambda raw: raw["state_dict"]["fc.bias"].add_(1e-3)),
    ("new-entry", lambda raw: raw.update(domain={"mean": torch.zeros(3)})),
    ("digest", lambda raw: raw["digest"].update(value="0" * 64)),
])
def test_an_edited_digested_file_is_refused_naming_it(tmp_path, ckpt, label, edit) -> None:
    raw = _raw(ckpt)
    edit(raw)
    bad = tmp_path / f"{label}.pt"
    torch.save(raw, bad)  # written around write_checkpoint: the old digest stays
    with pytest.raises(CheckpointError, match=ALTERED) as info:
        read_checkpoint(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(CheckpointError, match=ALTERED):  # a registered SHA256 does not excuse it
        read_checkpoint(bad, expected_sha256=file_sha256(bad))


def test_a_digest_entry_of_another_kind_is_refused(tmp_path, ckpt) -> None:
    raw = _raw(ckpt)
    raw["digest"] = {"algorithm": "md5", "value": raw["digest"]["value"]}
    torch.save(raw, tmp_path / "md5.pt")
    with pytest.raises(CheckpointError, match=r"md5\.pt: its digest entry .* is not a sha256 digest"):
        read_checkpoint(tmp_path / "md5.pt")


def test_a_file_without_digest_loads_with_one_warning(tmp_path, ckpt, caplog) -> None:
    raw = _raw(ckpt)
    del raw["digest"]
    old = tmp_path / "old.pt"
    torch.save(raw, old)  # as earlier versions wrote it
    with caplog.at_level(logging.WARNING):
        model, meta = load_checkpoint(old)
    warned = _warnings(caplog)
    assert len(warned) == 1 and NO_DIGEST in warned[0] and str(old) in warned[0]
    reference, _ = load_checkpoint(ckpt)
    x = torch.randn(1, 2, 64, 64)
    assert torch.equal(model(x), reference(x)) and meta == raw["meta"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # registered: its manifest SHA256 stands for the digest
        read_checkpoint(old, expected_sha256=file_sha256(old))
    assert _warnings(caplog) == []


def test_the_shipped_registered_files_load_without_warning(caplog) -> None:
    manifest = read_manifest()
    names = [m["name"] for m in manifest["models"]]
    assert names, "the repository ships registered models"
    with caplog.at_level(logging.WARNING):
        for name in names:
            path, sha = resolve_model(name)
            assert sha and read_checkpoint(path, expected_sha256=sha)["meta"]["architecture"]
        for entry in manifest.get("series_models", []):
            _, sha = resolve_series_model(entry["name"])
            assert sha and load_series_model(entry["name"], entry["type"]).meta["type"] == entry["type"]
    assert _warnings(caplog) == []


def test_series_models_carry_and_check_the_digest(tmp_path, caplog) -> None:
    meta = {"type": "slice_refiner", "features": "scores", "in_features": 2, "hidden": 4, "dropout": 0.0,
            "threshold_disease": 0.5, "threshold_pe": 0.5,
            "stages": [{"sha256": "a" * 64, "path": "s1.pt"}, {"sha256": "b" * 64, "path": "s2.pt"}]}
    path = save_series_model(tmp_path / "r.pt", SliceRefiner(2, 4, 0.0), meta)
    raw = _raw(path)
    assert raw["digest"]["value"] == content_digest(raw)
    assert load_series_model(path, "slice_refiner").thresholds == (0.5, 0.5)
    raw["meta"]["threshold_pe"] = 0.9
    bad = tmp_path / "bad.pt"
    torch.save(raw, bad)
    with pytest.raises(CheckpointError, match=ALTERED) as info:
        load_series_model(bad, "slice_refiner")
    assert str(bad) in str(info.value) and "slice refiner" in str(info.value)
    del raw["digest"]
    torch.save(raw, tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING):
        assert load_series_model(tmp_path / "old.pt", "slice_refiner").thresholds == (0.5, 0.9)
    warned = _warnings(caplog)
    assert len(warned) == 1 and NO_DIGEST in warned[0] and "old.pt" in warned[0]


def test_the_docs_example_edits_a_checkpoint_through_the_writer(tmp_path, monkeypatch, caplog) -> None:
    make_checkpoint(tmp_path / "best.pt", 1)
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block(DOC, "## Checkpoints"), "docs/models.md example", "exec"), {})
    with caplog.at_level(logging.WARNING):
        _, meta = load_checkpoint(tmp_path / "best-t04.pt")
    assert meta["threshold"] == 0.4 and _warnings(caplog) == []
