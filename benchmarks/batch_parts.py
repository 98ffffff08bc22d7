"""End to end with the batch in parts (one core each, the default fast path) against the whole
batch on all threads, in turns on the same cascade and series, so that load changes hit both.

    PYTHONPATH=. python benchmarks/batch_parts.py SERIES_DIR [ROUNDS]

SERIES_DIR: a DICOM series, e.g. the bench's 300 x 512 phantom (``petriage bench --cache DIR``
keeps it as DIR/phantom_seed8_300x512/series). Prints the median seconds per step of each.
"""
from __future__ import annotations

import logging
import statistics
import sys
import tempfile

from PETriageLib.bench.endtoend import bench_cascade, triage_once

STEPS = ("reading", "preprocessing", "stage1", "stage2", "domain_check", "gradcam", "writing", "total")


def main(series: str, rounds: int = 4) -> None:
    logging.basicConfig(level=logging.WARNING)
    cascade = bench_cascade("cbamdrn_d22_demo_stage1", "cbamdrn_d22_demo_stage2")
    out = tempfile.mkdtemp(prefix="petriage-parts-")
    triage_once(cascade, series, f"{out}/warmup")  # builds and checks both stages' predictors
    predictors = cascade.runner.fast_predictors().values()
    if not all(hasattr(p, "parts") for p in predictors):
        sys.exit("the cascade runs on ONNX Runtime here (--engine auto on a CPU without bf16): no parts to compare")
    threads = max(p.parts for p in predictors)
    if threads < 2:
        sys.exit("torch runs one thread here: the batch is never cut into parts")
    runs: dict[int, list[dict[str, float]]] = {threads: [], 1: []}
    for i in range(rounds):
        for parts in runs:
            for p in predictors:
                p.parts = parts
            runs[parts].append(triage_once(cascade, series, f"{out}/{i}-{parts}")["steps"])
    for parts, steps in runs.items():
        name = f"{parts} parts" if parts > 1 else "whole batch"
        medians = ", ".join(f"{k} {statistics.median(s[k] for s in steps):.2f}" for k in STEPS)
        totals = ", ".join(f"{s['total']:.2f}" for s in steps)
        print(f"{name}: {medians}; totals {totals}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
