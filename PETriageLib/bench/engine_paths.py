"""Stage 1 on every inference path, side by side: slices/s, GFLOP/s and the fraction of the
machine's limit in the path's precision, and each path's max |p - p_fp32| and label agreement
on the same fixed slices.

Paths: naive eager fp32; torch's fast path (models.fast) with the batch in parts, one core each
(its default), with the whole batch on all threads, and with fused (grouped) window branches;
ONNX Runtime fp32, sequential and fused; ONNX Runtime int8, calibrated on slices of other
phantom patients than the checked one (the training generator's seeds).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from PETriageLib.bench.machine_limit import MachineLimit, model_flops
from PETriageLib.bench.throughput import paired_throughput

log = logging.getLogger(__name__)


def _precision(mode: str) -> str:
    return "int8" if "int8" in mode else "bf16" if "bf16" in mode else "fp32"


def _predictors(model: Any, sha256: str, input_size: int, calibration: np.ndarray, batch: int,
                cache_dir: Path) -> dict[str, Any]:
    from PETriageLib.models.engine_predictor import EnginePredictor
    from PETriageLib.models.fast import FastOptions, FastPredictor, naive_predictor
    from PETriageLib.models.fused_branches import CannotFuse, fuse_branches

    paths: dict[str, Any] = {"naive": naive_predictor(model, "cpu", batch), "torch": FastPredictor(model, "cpu", batch_size=batch),
                             "torch whole batch": FastPredictor(model, "cpu", FastOptions(split_batch=False), batch_size=batch)}
    try:
        fused = fuse_branches(model)
    except CannotFuse as exc:
        log.info("window branches not fused: %s", exc)
        fused = None
    if fused is not None:
        paths["torch fused"] = FastPredictor(model, "cpu", FastOptions(fuse_branches=True), batch_size=batch)
    paths["onnxruntime"] = EnginePredictor(model, sha256, input_size, batch_size=batch, cache_dir=cache_dir)
    if fused is not None:
        paths["onnxruntime fused"] = EnginePredictor(fused, sha256 + "-fused", input_size, batch_size=batch,
                                                     cache_dir=cache_dir)
    paths["onnxruntime int8"] = EnginePredictor(model, sha256, input_size, "int8", calibration, batch_size=batch,
                                                cache_dir=cache_dir)
    return paths


def _probabilities(predictor: Any, images: np.ndarray, batch: int) -> np.ndarray:
    import torch

    out = []
    for s in range(0, len(images), batch):
        logits = predictor.logits(torch.from_numpy(np.ascontiguousarray(images[s:s + batch])))
        out.append(torch.sigmoid(logits.float()).reshape(-1).numpy())
    return np.concatenate(out)


def engine_paths(model: Any, sha256: str, images: np.ndarray, calibration: np.ndarray, limit: MachineLimit,
                 cache_dir: str | Path, batch: int = 32, repeats: int = 3, min_time_s: float = 2.0) -> dict[str, Any]:
    """One row per path (JSON-able). A path whose check against fp32 failed runs as what it fell
    back to, and the row says so (``kept`` False)."""
    import torch

    input_size = int(images.shape[-1])
    flops = model_flops(model, int(images.shape[1]), input_size)
    paths = _predictors(model, sha256, input_size, calibration, batch, Path(cache_dir))
    for p in paths.values():
        if p.validation is None:
            p.validate(images)  # every path is checked on the same fixed slices
    with torch.inference_mode():
        reference = _probabilities(paths["naive"], images, batch)
        probs = {name: _probabilities(p, images, batch) for name, p in paths.items()}
    timed = paired_throughput(paths, images, [batch], repeats, min_time_s)
    rows = []
    for name, p in paths.items():
        r = timed[name][0]
        precision = _precision(p.mode)
        ceiling = limit.for_precision(precision)
        gflops = r["slices_per_s"] * flops / 1e9
        dp = np.abs(probs[name] - reference)
        parts = getattr(p, "parts", None) or getattr(getattr(p, "torch", None), "parts", 1)  # an engine's torch fall-back
        mode = p.mode + (f", {parts} parts" if parts > 1 else "")
        rows.append({"path": name, "mode": mode, "precision": precision, "batch": batch,
                     "slices_per_s": r["slices_per_s"], "slices_per_cpu_s": r["slices_per_cpu_s"],
                     "gflops": gflops, "fraction_of_limit": gflops / ceiling if ceiling else None,
                     "max_abs_dp": float(dp.max()), "label_agreement": float(np.mean((probs[name] >= 0.5) == (reference >= 0.5))),
                     "kept": not getattr(p, "fallback", False), "reason": getattr(p, "reason", None)})
    return {"model": getattr(model, "name", "?"), "config": getattr(model, "config", {}), "input_size": input_size,
            "gflop_per_slice": flops / 1e9, "fixed_slices": int(len(images)), "calibration_slices": int(len(calibration)),
            "limit": limit.to_dict(), "rows": rows}
