"""Stage-1 slices/s at several batch sizes: naive eager fp32 vs the shipped fast path,
with the probability difference between the two on a fixed set of real preprocessed slices."""
from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from PETriageLib.bench.timing import time_call

log = logging.getLogger(__name__)


def fixed_slices(series_dir: str | Path, config: Any, count: int) -> np.ndarray:
    """``count`` lung slices spread evenly over the series, preprocessed as the model sees them."""
    from PETriageLib.ingest.load import load_series
    from PETriageLib.preprocess.lungs import analyse_lungs
    from PETriageLib.preprocess.slices import prepare_slices

    volume = load_series(series_dir)
    lungs = analyse_lungs(volume)
    candidates = [k for k, s in enumerate(lungs) if s.has_lung] or list(range(volume.num_slices))
    picks = np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int)
    return prepare_slices(volume, [candidates[i] for i in picks], config, lungs=lungs).images


def batch_of(images: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` images, repeating the set when it is smaller."""
    reps = -(-size // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:size])


def _timed_logits(predictor: Any, x: Any) -> Any:
    import torch

    def call() -> None:
        predictor.logits(x)
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
    return call


def paired_throughput(predictors: dict[str, Any], images: np.ndarray, batch_sizes: Sequence[int],
                      repeats: int, min_time_s: float) -> dict[str, list[dict[str, Any]]]:
    """slices/s (wall and per CPU-second) of each predictor at each batch size.

    The predictors take turns, one timing round each, ``repeats`` times: on a shared machine
    a change in load then hits all of them alike, so their ratio stays meaningful.
    """
    import torch

    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in predictors}
    for bs in batch_sizes:
        x = torch.from_numpy(batch_of(images, bs))
        calls = {name: _timed_logits(p, x) for name, p in predictors.items()}
        for call in calls.values():
            call()  # warm-up: first-call allocations and kernel selection for this shape
        rounds: dict[str, list[Any]] = {name: [] for name in predictors}
        for _ in range(max(1, repeats)):
            for name, call in calls.items():
                rounds[name].append(time_call(call, repeats=1, warmup=0, min_time_s=min_time_s / max(1, repeats)))
        for name, timings in rounds.items():
            wall = statistics.median(t.median_s for t in timings)
            cpu = statistics.median(t.cpu_median_s for t in timings)
            rows[name].append({"path": predictors[name].mode, "batch": bs, "slices_per_s": bs / wall,
                               "slices_per_cpu_s": bs / cpu if cpu > 0 else None,
                               "min_s": min(t.min_s for t in timings), "max_s": max(t.max_s for t in timings),
                               "calls": sum(t.repeats for t in timings), "load_avg": timings[-1].load_avg})
    return rows


def stage1_throughput(model: Any, images: np.ndarray, device: str = "cpu", batch_sizes: Sequence[int] = (1, 8, 32),
                      repeats: int = 5, min_time_s: float = 2.0) -> dict[str, Any]:
    """Naive vs fast stage-1 throughput and the fast path's check against fp32 on ``images``."""
    from PETriageLib.models.fast import FastPredictor, naive_predictor

    naive = naive_predictor(model, device)
    fast = FastPredictor(model, device)
    validation = fast.validate(images)
    rows = paired_throughput({"naive": naive, "fast": fast}, images, batch_sizes, repeats, min_time_s)
    speedup = {str(a["batch"]): b["slices_per_s"] / a["slices_per_s"] for a, b in zip(rows["naive"], rows["fast"])}
    best = max(r["slices_per_s"] for r in rows["fast"]) / max(r["slices_per_s"] for r in rows["naive"])
    return {"model": getattr(model, "name", "?"), "config": getattr(model, "config", {}),
            "input_size": int(images.shape[-1]), "fixed_slices": int(len(images)),
            "fast_mode": fast.mode, "fallback": fast.fallback, "validation": validation.to_dict(),
            "naive": rows["naive"], "fast": rows["fast"], "speedup": speedup, "best_speedup": best}


def compile_payoff(model: Any, images: np.ndarray, device: str = "cpu", batch_size: int = 16,
                   series_slices: int = 300, repeats: int = 3) -> dict[str, Any]:
    """Does torch.compile pay for one series? Its one-off compile time vs the time it saves."""
    import torch

    from PETriageLib.models.fast import FastOptions, FastPredictor

    x = torch.from_numpy(batch_of(images, batch_size))
    eager = FastPredictor(model, device, batch_size=batch_size)
    compiled = FastPredictor(model, device, FastOptions(compile=True), batch_size=batch_size)
    t = time.perf_counter()
    compiled.logits(x)  # the first call compiles
    compile_s = time.perf_counter() - t
    t_eager = time_call(_timed_logits(eager, x), repeats=repeats, warmup=1).median_s / batch_size
    t_comp = time_call(_timed_logits(compiled, x), repeats=repeats, warmup=1).median_s / batch_size
    saved = (t_eager - t_comp) * series_slices
    return {"batch": batch_size, "compile_s": compile_s, "eager_fast_slices_per_s": 1 / t_eager,
            "compiled_slices_per_s": 1 / t_comp, "series_slices": series_slices,
            "saved_per_series_s": saved, "pays_off": bool(saved > compile_s),
            "break_even_slices": (compile_s / (t_eager - t_comp)) if t_eager > t_comp else None}
