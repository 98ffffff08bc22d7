"""One series triaged end to end (read, preprocess, stage 1, stage 2, Grad-CAM, write), split by step.

The same steps as ``petriage triage``; repeated, with the median per step. After the first
run the DICOM files are in the OS page cache, so "reading" is decoding, not disk time.
"""
from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from PETriageLib.bench.timing import load_average

log = logging.getLogger(__name__)

STEPS = ("reading", "preprocessing", "stage1", "stage2", "domain_check", "gradcam", "writing")
# Work done in a background thread while the steps above ran: not part of the total. The
# "preprocessing" step is the lung analysis plus what the loop still waited for its batches.
OVERLAPPED = ("preprocessing_ahead",)


def bench_cascade(stage1: str, stage2: str, device: str = "cpu", inference: str = "fast", **options: Any) -> Any:
    """The cascade on the given inference path ("fast" or "eager"/"naive"). The domain check only
    warns here: a benchmark times every step, also on series it would refuse (the quick plan's
    128 px phantoms are unlike the demo models' training data)."""
    from PETriageLib.triage.cascade import build_cascade

    options.setdefault("domain_check", "warn")
    return build_cascade(stage1, stage2, device=device, inference=inference, **options)


def triage_once(cascade: Any, series_dir: str | Path, out_dir: str | Path, top_k: int = 5) -> dict[str, Any]:
    """Read, triage, Grad-CAM on the top-k slices and write the report; seconds per step."""
    from PETriageLib.screening.one_series import ScreenOptions, screen_files

    t0 = time.perf_counter()
    options = ScreenOptions(cam="top-k" if top_k > 0 else "none", top_k=max(top_k, 0))
    screened = screen_files(cascade, series_dir, options=options, out_dir=out_dir)
    total = time.perf_counter() - t0
    result = screened.result
    steps = {k: float(screened.files.timings.get(k, 0.0)) for k in STEPS}
    steps["other"] = max(0.0, total - sum(steps.values()))
    steps["total"] = total
    overlapped = {k: float(screened.files.timings.get(k, 0.0)) for k in OVERLAPPED}
    n2 = sum(1 for r in result.rows if r.p_pe is not None)
    return {"steps": steps, "overlapped": overlapped, "slices": result.volume.num_slices, "matrix": int(result.volume.shape[-1]),
            "volume_mb": result.volume.hu.nbytes / 2 ** 20,
            "lung_slices": sum(1 for r in result.rows if r.has_lung), "stage2_slices": n2,
            "verdict": result.verdict.verdict,
            "cam_slices": 0 if screened.heatmaps is None else len(screened.heatmaps.slices)}


def end_to_end(stage1: str, stage2: str, series_dir: str | Path, device: str = "cpu", inference: str = "fast",
               repeats: int = 3, warmup: int = 1, top_k: int = 5) -> dict[str, Any]:
    """Median and range per step over ``repeats`` triages after ``warmup`` untimed ones."""
    cascade = bench_cascade(stage1, stage2, device, inference)
    out = Path(tempfile.mkdtemp(prefix="petriage-bench-"))
    try:
        runs = [triage_once(cascade, series_dir, out / f"run{i}", top_k) for i in range(warmup + repeats)][warmup:]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    steps = {k: {"median_s": statistics.median(r["steps"][k] for r in runs),
                 "min_s": min(r["steps"][k] for r in runs), "max_s": max(r["steps"][k] for r in runs)}
             for k in runs[0]["steps"]}
    overlapped = {k: statistics.median(r["overlapped"][k] for r in runs) for k in OVERLAPPED}
    info = {k: v for k, v in runs[-1].items() if k not in ("steps", "overlapped")}
    return {"inference": inference, "device": device, "repeats": repeats, "warmup": warmup, "top_k": top_k,
            "steps": steps, "overlapped_s": overlapped, **info, "load_avg": load_average(),
            "fast_paths": cascade.runner.fast_paths()}
