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


def test_the_torch_engine_cuts_batches_into_one_part_per_thread(stages):
    s1, s2 = stages
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runner = StageRunner(s1, s2, device="cpu", engine="torch", batch_size=4)
        assert runner.fast_predictors() == {}  # built on first use
        size = int(s1.meta["input_size"])
        images = np.random.default_rng(1).uniform(-1, 1, (5, s1.model.in_channels, size, size)).astype(np.float32)
        p = runner.probabilities(s1, images)
        (predictor,) = runner.fast_predictors().values()
        assert predictor.parts == 2 and runner.fast_paths()["stage1"]["parts"] == 2
        predictor.parts = 1
        np.testing.assert_allclose(runner.probabilities(s1, images), p, atol=1e-4)
    finally:
        torch.set_num_threads(before)


def test_unknown_engine_is_refused(stages):
    with pytest.raises(ValueError, match="unknown engine"):
        StageRunner(*stages, device="cpu", engine="tensorrt")


def test_engine_choice_follows_the_hardware_and_the_request(stages):
    from PETriageLib.models.fast import bf16_supported
    from PETriageLib.models.onnx_engine import engine_problem
    from PETriageLib.triage.stage_runner import choose_engine

    cpu = torch.device("cpu")
    assert choose_engine("torch", cpu) == ("torch", "requested")
    assert choose_engine("onnx", torch.device("cuda"))[0] == "torch"  # ONNX Runtime is CPU-only here
    engine, why = choose_engine("auto", cpu)
    if bf16_supported(cpu):
        assert engine == "torch" and "bf16" in why
    else:
        assert engine == ("torch" if engine_problem() else "onnx")
    assert choose_engine("onnxruntime", cpu) == choose_engine("onnx", cpu)


def test_cli_engine_reaches_the_report(tmp_path, monkeypatch, tiny_checkpoints):
    """`petriage triage --engine onnx` on a phantom: the report says which engine ran, and the labels
    equal those of --engine torch."""
    import json

    from PETriageLib.cli import main
    from PETriageLib.phantom.study import generate_study
    from PETriageLib.phantom.writer import write_series

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("PETRIAGE_ENGINE_CACHE", str(tmp_path / "engines"))
    series = tmp_path / "series"
    write_series(generate_study(4, matrix=96, slices=10, contrast="ctpa", pe=True), series)
    reports = {}
    for engine in ("torch", "onnx"):
        out = tmp_path / engine
        assert main(["triage", str(series), "--out", str(out), "--models", *map(str, tiny_checkpoints),
                     "--engine", engine, "--domain-check", "off", "--cam", "none", "--no-images"]) == 0
        reports[engine] = json.loads(next(out.rglob("report.json")).read_text())
    used = reports["onnx"]["options"]["fast_paths"]
    assert used["engine"] == {"requested": "onnx", "used": "onnx", "why": "requested"}
    assert used["stage1"]["mode"].startswith("onnxruntime") or used["stage1"]["fallback"]
    assert reports["torch"]["options"]["fast_paths"]["engine"]["used"] == "torch"
    assert reports["torch"]["options"]["engine"] == "torch"
    labels = {e: [(r["index"], r["label"]) for r in reports[e]["slices"]] for e in reports}
    assert labels["onnx"] == labels["torch"]
    p = {e: np.array([r["p_disease"] for r in reports[e]["slices"] if r["p_disease"] is not None]) for e in reports}
    assert len(p["onnx"]) == len(p["torch"]) > 0 and np.abs(p["onnx"] - p["torch"]).max() < 0.02


def test_the_default_cascade_loads_no_library_it_does_not_run():
    """Loading the shipped pair for triage imports neither ONNX Runtime (on a bf16 CPU, where the
    engine choice keeps torch) nor torchvision or SimpleITK: together about 300 MB of the peak."""
    import subprocess
    import sys

    from PETriageLib.models.fast import bf16_supported

    code = ("import sys\nfrom PETriageLib import build_cascade\n"
            "build_cascade('cbamdrn_d22_demo_stage1', 'cbamdrn_d22_demo_stage2', device='cpu')\n"
            "print(sorted(m for m in ('onnxruntime', 'onnx', 'torchvision', 'SimpleITK') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    loaded = out.stdout.strip().splitlines()[-1]
    expected = "[]" if bf16_supported(torch.device("cpu")) else "['onnx', 'onnxruntime']"
    assert loaded == expected, out.stderr[-2000:]
