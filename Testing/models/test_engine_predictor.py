"""ONNX Runtime engine: exported once per checkpoint, checked against fp32 torch, torch when it
is missing or differs; int8 kept or refused by the tolerance."""
from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from PETriageLib.models import build_model
from PETriageLib.models.engine_predictor import EnginePredictor
from PETriageLib.models.onnx_engine import engine_problem

pytest.importorskip("onnxruntime", reason="the fast extra (onnxruntime) is not installed")

SIZE = 64
SHA = "ab" * 32


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cbamdrn_d22", ("vascular", "lung"), width=0.125).eval()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (6, 2, SIZE, SIZE)).astype(np.float32)


def _fp32(model, images):
    with torch.inference_mode():
        return torch.sigmoid(model(torch.from_numpy(images))).reshape(-1).numpy()


def test_exported_once_checked_and_used(tiny, images, tmp_path):
    p = EnginePredictor(tiny, SHA, SIZE, cache_dir=tmp_path, batch_size=4)
    assert not p.fallback and p.mode == "onnxruntime-fp32" and p.engine_file.exported
    files = list(tmp_path.glob("*.onnx"))
    assert len(files) == 1 and files[0].name.startswith(SHA[:32])
    probs = p(images)
    assert probs.shape == (6,) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, _fp32(tiny, images), atol=1e-5)
    assert p.validation.n == 6 and p.validation.passed and p.validation.label_agreement == 1.0
    again = EnginePredictor(tiny, SHA, SIZE, cache_dir=tmp_path)
    assert not again.engine_file.exported and again.engine_file.path == files[0]  # from the cache
    assert p.logits(torch.from_numpy(images)).shape == (6, 1)


def test_engine_missing_falls_back_to_torch(tiny, images, tmp_path, monkeypatch, caplog):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    assert "onnxruntime is not installed" in engine_problem()
    with caplog.at_level("WARNING"):
        p = EnginePredictor(tiny, SHA, SIZE, cache_dir=tmp_path)
    assert p.fallback and p.torch is not None and "onnxruntime is not installed" in p.reason
    assert "not used" in caplog.text and not list(tmp_path.glob("*.onnx"))
    np.testing.assert_allclose(p(images), _fp32(tiny, images), atol=0.02)
    assert p.describe()["fallback"] is True and p.describe()["torch"]["mode"] == p.mode


def test_failed_check_falls_back_to_torch(tiny, images, tmp_path, caplog):
    p = EnginePredictor(tiny, SHA, SIZE, cache_dir=tmp_path, batch_size=4)
    assert not p.fallback
    engine = p.session

    def damaged(x):  # the engine's logits shifted by 1: probabilities move by up to 0.25
        return engine(x) + 1.0
    p.session = damaged
    with caplog.at_level("WARNING"):
        probs = p(images)
    assert p.fallback and "max |p - p_fp32|" in p.reason and not p.validation.passed
    np.testing.assert_allclose(probs, _fp32(tiny, images), atol=0.02)


def test_missing_checksum_or_size_falls_back(tiny, tmp_path):
    assert EnginePredictor(tiny, "", SIZE, cache_dir=tmp_path).fallback
    with pytest.raises(ValueError, match="variant"):
        EnginePredictor(tiny, SHA, SIZE, variant="fp16", cache_dir=tmp_path)
    assert "calibration" in EnginePredictor(tiny, SHA, SIZE, variant="int8", cache_dir=tmp_path).reason


def test_int8_kept_within_tolerance_and_refused_beyond(tiny, images, tmp_path):
    calibration = np.random.default_rng(2).uniform(-1, 1, (8, 2, SIZE, SIZE)).astype(np.float32)
    loose = EnginePredictor(tiny, SHA, SIZE, "int8", calibration, cache_dir=tmp_path, tolerance=0.5)
    assert loose.mode == "onnxruntime-int8" and "int8" in loose.engine_file.path.name
    v = loose.validate(images)
    dp = v.max_abs_dp
    assert 0.0 < dp < 0.5, "int8 differs from fp32, a little"
    if v.label_agreement == 1.0:
        assert not loose.fallback
    strict = EnginePredictor(tiny, SHA, SIZE, "int8", calibration, cache_dir=tmp_path, tolerance=dp / 2)
    assert not strict.engine_file.exported  # the int8 file is cached too
    strict.validate(images)
    assert strict.fallback and "tolerance" in strict.reason
