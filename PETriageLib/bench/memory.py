"""Peak resident memory of one triage, measured in a fresh subprocess per series.

The child imports torch, loads both models (``baseline``), then reads and triages the
series with Grad-CAM and the report, and prints its peak RSS (VmHWM) as JSON, with the resident
pages of mapped files at the end (``file_backed_mb``: shared libraries, part of every peak) and the
malloc in use (``allocator``; run the bench under ``LD_PRELOAD=.../libjemalloc.so.2`` to measure
jemalloc). A fresh process per series keeps one run's peak from hiding another's.

Child usage: ``python -m PETriageLib.bench.memory SERIES_DIR STAGE1 STAGE2 [--device D] [--inference I] [--top-k K]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    Linux: VmHWM of /proc/self/status, because ru_maxrss survives exec and so reports the
    parent's peak in a child started by a large process. Elsewhere: ru_maxrss (bytes on macOS).
    """
    hwm = status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def status_mb(field: str) -> "float | None":
    """One ``/proc/self/status`` field in MB (Linux), e.g. RssFile: the resident pages of mapped files
    (shared libraries: torch's CUDA libraries count here even on a CPU), which VmHWM includes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def allocator() -> str:
    """The malloc in use: a preloaded one (LD_PRELOAD, e.g. jemalloc) or the C library's."""
    preload = os.environ.get("LD_PRELOAD", "").strip()
    return Path(preload.split()[0].split(":")[0]).name if preload else "glibc"


def measure_in_subprocess(series_dir: str | Path, stage1: str, stage2: str, device: str = "cpu",
                          inference: str = "fast", top_k: int = 5, timeout_s: float = 1800) -> dict[str, Any]:
    """Run the child on one series and return what it measured."""
    cmd = [sys.executable, "-m", "PETriageLib.bench.memory", str(series_dir), stage1, stage2,
           "--device", device, "--inference", inference, "--top-k", str(top_k)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark of {series_dir} failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_memory(series_dirs: Sequence[str | Path], stage1: str, stage2: str, device: str = "cpu",
                inference: str = "fast", top_k: int = 5) -> list[dict[str, Any]]:
    rows = []
    for d in series_dirs:
        row = measure_in_subprocess(d, stage1, stage2, device, inference, top_k)
        log.info("%d slices: peak RSS %.0f MB (baseline %.0f, volume %.0f)", row["slices"], row["peak_rss_mb"],
                 row["baseline_rss_mb"], row["volume_mb"])
        rows.append(row)
    return rows


def _child(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m PETriageLib.bench.memory")
    p.add_argument("series_dir")
    p.add_argument("stage1")
    p.add_argument("stage2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--inference", default="fast")
    p.add_argument("--top-k", type=int, default=5)
    args = p.parse_args(argv)

    from PETriageLib.bench.endtoend import bench_cascade, triage_once

    cascade = bench_cascade(args.stage1, args.stage2, args.device, args.inference)
    baseline = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="petriage-mem-") as out:
        run = triage_once(cascade, args.series_dir, out, args.top_k)
    peak = peak_rss_mb()
    volume_mb = run["volume_mb"]
    row = {"slices": run["slices"], "matrix": run["matrix"], "peak_rss_mb": peak, "baseline_rss_mb": baseline,
           "volume_mb": volume_mb, "beyond_volume_mb": peak - baseline - volume_mb,
           "file_backed_mb": status_mb("RssFile"), "allocator": allocator(),
           "total_s": run["steps"]["total"], "steps": run["steps"], "inference": args.inference}
    if args.device.startswith("cuda"):
        import torch

        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
