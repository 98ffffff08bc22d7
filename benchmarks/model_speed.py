"""CPU inference speed of PETriage models (eager fp32): slices/s per width, input size and batch.

Rerun: .venv/bin/python benchmarks/model_speed.py --threads 2 --sizes 160 400 --widths 0.5 1.0 --batches 1 8
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

import torch

from PETriageLib.models import build_model

log = logging.getLogger("model_speed")


def slices_per_second(model: torch.nn.Module, size: int, batch: int, min_seconds: float) -> float:
    """Timed after one warm-up batch; repeats until ``min_seconds`` have passed (at least 1 run)."""
    x = torch.randn(batch, len(model.windows), size, size)
    with torch.inference_mode():
        model(x)
        runs, start = 0, time.perf_counter()
        while runs < 1 or time.perf_counter() - start < min_seconds:
            model(x)
            runs += 1
        elapsed = time.perf_counter() - start
    return runs * batch / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cbamdrn_d22")
    p.add_argument("--windows", default="vascular,lung")
    p.add_argument("--widths", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 400])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per case")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()  # other jobs on the machine skew the numbers: report the load
    windows = tuple(args.windows.split(","))
    rows = []
    for width in args.widths:
        model = build_model(args.model, windows=windows, width=width).eval()
        params = sum(q.numel() for q in model.parameters())
        for size in args.sizes:
            for batch in args.batches:
                rate = slices_per_second(model, size, batch, args.seconds)
                rows.append({"model": args.model, "windows": list(windows), "width": width, "params": params,
                             "size": size, "batch": batch, "threads": args.threads, "slices_per_s": round(rate, 2)})
                log.info("%s w=%.2f %dpx batch %d: %.2f slices/s", args.model, width, size, batch, rate)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"load average before/after: {load_before} / {os.getloadavg()}")
    print(f"{'model':<12} {'width':>5} {'params(M)':>9} {'size':>5} {'batch':>5} {'slices/s':>9}  "
          f"(torch {torch.__version__}, {args.threads} threads, eager fp32)")
    for r in rows:
        print(f"{r['model']:<12} {r['width']:>5} {r['params'] / 1e6:>9.2f} {r['size']:>5} {r['batch']:>5} "
              f"{r['slices_per_s']:>9.2f}")


if __name__ == "__main__":
    main()
