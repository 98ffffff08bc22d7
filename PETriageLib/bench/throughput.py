"""Stage-1 slices/s at several batch sizes: naive eager fp32 vs the shipped fast path,
with the probability difference between the two on a fixed set of real preprocessed slices."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from PETriageLib.bench.timing import time_call

log = logging.getLogger(__name__)


def fixed_slices(series_dir: str | Path, config: Any, count: int) -> np.ndarray:
    """``count`` lung slices spread evenly over the series, preprocessed as the model sees them."""
    from PETriageLib.dicom_series import load_series
    from PETriageLib.lung_crop import analyse_lungs
    from PETriageLib.preprocess import prepare_slices

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


def path_throughput(predictor: Any, images: np.ndarray, batch_sizes: Sequence[int], repeats: int,
                    min_time_s: float) -> list[dict[str, Any]]:
    """slices/s (wall and per CPU-second) of ``predictor`` at each batch size."""
    import torch

    rows = []
    for bs in batch_sizes:
        x = torch.from_numpy(batch_of(images, bs))
        t = time_call(_timed_logits(predictor, x), repeats=repeats, warmup=2, min_time_s=min_time_s)
        rows.append({"path": predictor.mode, "batch": bs, "slices_per_s": bs / t.median_s,
                     "slices_per_cpu_s": bs / t.cpu_median_s if t.cpu_median_s > 0 else None,
                     "timing": t.to_dict()})
    return rows


def stage1_throughput(model: Any, images: np.ndarray, device: str = "cpu", batch_sizes: Sequence[int] = (1, 8, 32),
                      repeats: int = 5, min_time_s: float = 2.0) -> dict[str, Any]:
    """Naive vs fast stage-1 throughput and the fast path's check against fp32 on ``images``."""
    from PETriageLib.fast_inference import FastPredictor, naive_predictor

    naive = naive_predictor(model, device)
    fast = FastPredictor(model, device)
    validation = fast.validate(images)
    rows = {"naive": path_throughput(naive, images, batch_sizes, repeats, min_time_s),
            "fast": path_throughput(fast, images, batch_sizes, repeats, min_time_s)}
    speedup = {str(a["batch"]): a_fast["slices_per_s"] / a["slices_per_s"]
               for a, a_fast in zip(rows["naive"], rows["fast"])}
    best = max(r["slices_per_s"] for r in rows["fast"]) / max(r["slices_per_s"] for r in rows["naive"])
    return {"model": getattr(model, "name", "?"), "config": getattr(model, "config", {}),
            "input_size": int(images.shape[-1]), "fixed_slices": int(len(images)),
            "fast_mode": fast.mode, "fallback": fast.fallback, "validation": validation.to_dict(),
            "naive": rows["naive"], "fast": rows["fast"], "speedup": speedup, "best_speedup": best}


def compile_payoff(model: Any, images: np.ndarray, device: str = "cpu", batch_size: int = 16,
                   series_slices: int = 300, repeats: int = 3) -> dict[str, Any]:
    """Does torch.compile pay for one series? Its one-off compile time vs the time it saves."""
    import torch

    from PETriageLib.fast_inference import FastOptions, FastPredictor

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
