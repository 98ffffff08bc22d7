"""The machine's limit is a positive finite rate, and every path's fraction of it is plausible.

No timing thresholds: the numbers depend on the machine and its load.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from PETriageLib.bench.machine_limit import MachineLimit, measure_limit, model_flops, probe_flops
from PETriageLib.models import build_model

SMALL_PROBE = {"batch": 2, "channels": 64, "size": 32}


def _rate(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_model_flops_counts_the_convolutions():
    model = build_model("cbamdrn_d22", ("vascular", "lung"), width=0.125).eval()
    flops = model_flops(model, 2, 64)
    # every convolution at least: the first 7x7 conv of each branch on a 64 x 64 slice
    first = 2 * 2 * 7 * 7 * model.branches[0].layer0[0].out_channels * 64 * 64
    assert flops > first and math.isfinite(flops)
    assert model_flops(model, 2, 128) == pytest.approx(4 * flops, rel=0.05)  # scales with the pixels
    assert probe_flops(8, 128, 56) == pytest.approx(7.40e9, rel=0.01)


def test_limit_positive_finite_per_precision():
    limit = measure_limit(repeats=2, min_time_s=0.0, probe=SMALL_PROBE)
    assert isinstance(limit, MachineLimit) and _rate(limit.fp32)
    assert all(_rate(v) for v in limit.engines.values()) and "torch-fp32" in limit.engines
    assert limit.fp32 == max(v for k, v in limit.engines.items() if k.endswith("fp32"))
    if "onnxruntime-int8" in limit.engines:
        assert limit.int8 == limit.engines["onnxruntime-int8"]
    assert limit.for_precision("fp32") == limit.fp32 and limit.for_precision("fp16") is None


def test_engine_paths_fractions_and_agreement(tmp_path):
    pytest.importorskip("onnxruntime")
    from PETriageLib.bench.engine_paths import engine_paths

    torch.manual_seed(0)
    model = build_model("cbamdrn_d22", ("vascular", "lung"), width=0.125).eval()
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (4, 2, 64, 64)).astype(np.float32)
    calibration = rng.uniform(-1, 1, (4, 2, 64, 64)).astype(np.float32)
    limit = measure_limit(repeats=2, min_time_s=0.0)
    result = engine_paths(model, "cd" * 32, images, calibration, limit, tmp_path, batch=4, repeats=1,
                          min_time_s=0.0)
    rows = {r["path"]: r for r in result["rows"]}
    assert set(rows) == {"naive", "torch", "torch whole batch", "torch fused", "onnxruntime", "onnxruntime fused",
                         "onnxruntime int8"}
    parts = torch.get_num_threads()  # the default torch path cuts each batch into one part per thread
    assert rows["torch"]["mode"].endswith(f", {parts} parts") == (parts > 1)
    assert "parts" not in rows["torch whole batch"]["mode"] and "parts" not in rows["naive"]["mode"]
    assert rows["naive"]["max_abs_dp"] == 0.0 and rows["naive"]["label_agreement"] == 1.0
    for r in rows.values():
        assert _rate(r["slices_per_s"]) and _rate(r["gflops"])
        # on a loaded machine a small model reaches little of it, and no path beats it by half
        assert 0 < r["fraction_of_limit"] <= 1.5, r
        assert r["max_abs_dp"] <= 0.02 or not r["kept"]
    assert rows["onnxruntime"]["mode"] == "onnxruntime-fp32" and rows["onnxruntime"]["max_abs_dp"] < 1e-4
    assert result["gflop_per_slice"] > 0
