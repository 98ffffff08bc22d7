"""StageRunner(engine="onnxruntime") runs the stages on ONNX Runtime, checked against eager fp32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from PETriageLib.triage.stage_runner import StageRunner
from PETriageLib.triage.stages import load_stage


@pytest.fixture(scope="module")
def stages():
    return load_stage(1, "cbamdrn_d22_demo_stage1"), load_stage(2, "cbamdrn_d22_demo_stage2")


def test_onnxruntime_engine_gives_the_eager_probabilities(stages, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("PETRIAGE_ENGINE_CACHE", str(tmp_path))
    s1, s2 = stages
    runner = StageRunner(s1, s2, device="cpu", engine="onnxruntime", batch_size=4)
    size = int(s1.meta["input_size"])
    images = np.random.default_rng(0).uniform(-1, 1, (3, s1.model.in_channels, size, size)).astype(np.float32)
    p = runner.probabilities(s1, images)
    with torch.inference_mode():
        ref = torch.sigmoid(s1.model(torch.from_numpy(images))).reshape(-1).numpy()
    np.testing.assert_allclose(p, ref, atol=1e-4)
    described = runner.fast_paths()["stage1"]
    assert described["mode"] == "onnxruntime-fp32" and not described["fallback"]
    assert described["engine_file"].startswith(str(tmp_path)) and s1.sha256[:32] in described["engine_file"]


def test_unknown_engine_is_refused(stages):
    with pytest.raises(ValueError, match="unknown engine"):
        StageRunner(*stages, device="cpu", engine="tensorrt")
