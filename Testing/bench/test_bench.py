"""`petriage bench --quick` produces every number, positive and finite, with consistent keys.

No timing assertions: the numbers depend on the machine and its load.
"""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from PETriageLib.bench.comparators import accuracy_table
from PETriageLib.bench.endtoend import OVERLAPPED, STEPS
from PETriageLib.bench.scaling import fit_slope
from PETriageLib.bench.timing import time_call
from PETriageLib.cli import main


def _positive(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    try:
        # one thread: the CI machine may be shared, and oversubscribed OpenMP threads crawl
        assert main(["-q", "bench", "--quick", "--fresh-models", "--threads", "1", "--out", str(out)]) == 0
    finally:  # --threads changes process-wide settings: give the other tests theirs back
        torch.set_num_threads(threads)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env
    return out, json.loads((out / "bench.json").read_text())


def test_quick_bench_writes_json_and_markdown(quick):
    out, res = quick
    md = (out / "bench.md").read_text()
    assert "in a background thread, overlapped with the steps: preprocessing ahead" in md
    for title in ("End-to-end triage", "Stage-1 throughput", "Stage 1 on every inference path", "Comparators",
                  "Peak memory", "Time vs slices"):
        assert f"## {title}" in md
    assert res["quick"] is True and res["models"]["source"] == "fresh"
    m = res["machine"]
    assert m["torch_threads"] >= 1 and m["usable_cpus"] >= 1 and m["cpu"] and m["torch"].startswith("2.")


def test_quick_end_to_end_steps(quick):
    _, res = quick
    (run,) = res["end_to_end"]
    assert set(run["steps"]) == set(STEPS) | {"other", "total"}
    total = run["steps"]["total"]["median_s"]
    for name in ("reading", "preprocessing", "stage1", "writing", "total"):
        assert _positive(run["steps"][name]["median_s"]), name
    parts = sum(run["steps"][s]["median_s"] for s in STEPS) + run["steps"]["other"]["median_s"]
    assert parts == pytest.approx(total, rel=1e-6)
    assert run["slices"] == res["plan"]["e2e_slices"] and 0 < run["lung_slices"] <= run["slices"]
    assert 0 <= run["stage2_slices"] <= run["lung_slices"]
    # the batches prepared in the background thread: timed, and outside the steps' total
    assert set(run["overlapped_s"]) == set(OVERLAPPED) and _positive(run["overlapped_s"]["preprocessing_ahead"])


def test_quick_throughput_naive_and_fast(quick):
    _, res = quick
    t = res["throughput"]
    batches = res["plan"]["batch_sizes"]
    for path in ("naive", "fast"):
        assert [r["batch"] for r in t[path]] == batches
        assert all(_positive(r["slices_per_s"]) and _positive(r["slices_per_cpu_s"]) for r in t[path])
    assert set(t["speedup"]) == {str(b) for b in batches} and all(_positive(v) for v in t["speedup"].values())
    v = t["validation"]
    assert v["n"] == res["plan"]["fixed_slices"] and 0 <= v["max_abs_dp"] <= v["tolerance"] and v["passed"]


def test_quick_comparators_and_ratio(quick):
    _, res = quick
    c = res["comparators"]
    names = [r["name"] for r in c["rows"]]
    assert names == ["cbamdrn_d22", "efficientnet_b5"]
    for r in c["rows"]:
        assert r["params"] > 1e6 and _positive(r["naive_slices_per_s"]) and _positive(r["fast_slices_per_s"])
    assert c["rows"][0]["params"] < c["rows"][1]["params"]
    assert _positive(c["ratio"]["speed"]) and c["ratio"]["params"] == pytest.approx(
        c["rows"][0]["params"] / c["rows"][1]["params"])


def test_quick_memory_and_scaling(quick):
    _, res = quick
    rows = res["memory"]
    assert [r["slices"] for r in rows] == res["plan"]["memory_slices"]
    for r in rows:
        # torch alone is hundreds of MB; the peak is at least what was there after loading the models
        assert 100 < r["baseline_rss_mb"] <= r["peak_rss_mb"] < 64_000
        assert r["volume_mb"] == pytest.approx(r["slices"] * r["matrix"] ** 2 * 2 / 2 ** 20, rel=0.01)
        assert _positive(r["total_s"])
        # the libraries' resident pages are part of the peak (torch alone maps more than 50 MB of them)
        assert 50 < r["file_backed_mb"] < r["peak_rss_mb"]
        assert r["allocator"] == "glibc" or os.environ.get("LD_PRELOAD")
    s = res["scaling"]
    assert [p[0] for p in s["points"]] == res["plan"]["memory_slices"]
    assert math.isfinite(s["slope_s_per_slice"]) and math.isfinite(s["intercept_s"])


def test_fit_slope_recovers_a_line():
    s = fit_slope([100, 300, 600], [2.0 + 0.05 * 100, 2.0 + 0.05 * 300, 2.0 + 0.05 * 600])
    assert s["slope_s_per_slice"] == pytest.approx(0.05) and s["intercept_s"] == pytest.approx(2.0)
    assert s["slices_per_s"] == pytest.approx(20.0) and s["r2"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two different"):
        fit_slope([100, 100], [1.0, 2.0])


def test_time_call_counts_repeats_and_warmup():
    calls = []
    t = time_call(lambda: calls.append(sum(range(1000))), repeats=4, warmup=2)
    assert len(calls) == 6 and t.repeats == 4 and 0 < t.min_s <= t.median_s <= t.max_s


def test_accuracy_table_reads_experiment_and_plain_records(tmp_path):
    f = tmp_path / "results.json"
    f.write_text(json.dumps({
        "stage2/resnet50-fixed": {"variant": "resnet50-fixed", "stage": 2, "label": "ResNet-50 s2",
                                  "report": {"accuracy": {"correct": 1, "total": 2}, "auroc": {"auroc": 0.5}}},
        "stage1/resnet50-fixed": {"variant": "resnet50-fixed", "stage": 1, "label": "ResNet-50, fixed crop",
                                  "report": {"accuracy": {"correct": 3, "total": 4}, "auroc": {"auroc": 0.8}}},
        "others": [{"model": "efficientnet_b5", "accuracy": 91.5}, {"model": "x", "auroc": 0.9}]}))
    table = accuracy_table(f)
    assert set(table) == {"resnet50", "efficientnet_b5"}
    assert table["resnet50"] == {"accuracy": 0.75, "auroc": 0.8, "variant": "ResNet-50, fixed crop", "stage": 1}
    assert table["efficientnet_b5"]["accuracy"] == pytest.approx(0.915) and table["efficientnet_b5"]["auroc"] is None
    assert accuracy_table(tmp_path / "missing.json") == {}


def test_comparators_take_the_centre_slices_of_a_context_reference():
    """Shipped models with slice context: the comparators without it time the same slices."""
    import numpy as np

    from PETriageLib.bench.comparators import compare_models
    from PETriageLib.preprocess.slices import centre_channels

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 6, 64, 64)).astype(np.float32)  # 2 windows x slices k-1, k, k+1
    assert np.array_equal(centre_channels(images, 2, 1), images[:, [1, 4]])
    assert np.array_equal(centre_channels(images, 2, 1, keep=1), images)
    with pytest.raises(ValueError, match="cannot keep 2 slice"):
        centre_channels(images, 2, 1, keep=2)
    result = compare_models(images, ("cbamdrn_d22", {"width": 0.125, "context": 1}), batch=2, repeats=1,
                            min_time_s=0.01, models=[("cbamdrn_d22", {"width": 0.125})])
    assert [r["config"].get("context", 0) for r in result["rows"]] == [1, 0]
    assert all(_positive(r["fast_slices_per_s"]) for r in result["rows"])
    with pytest.raises(ValueError, match="6 channels are not 2 windows x 5 slices"):
        centre_channels(images, 2, 2)
