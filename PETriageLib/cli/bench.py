"""`petriage bench [--quick] [--device cpu|cuda] [--out DIR]`: speed, memory and scaling benchmarks.

Generates phantom series once (cached in OUT/series-cache), then measures end-to-end triage
split by step, stage-1 throughput naive vs fast, the comparator models, peak memory per
series length and the time-vs-slices slope. Prints the Markdown table; writes OUT/bench.json
and OUT/bench.md.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


# Where `petriage experiment --out runs/exp-SIZE` writes its results, largest experiment first.
ACCURACY_FILES = ("runs/exp-full/results.json", "runs/exp-small/results.json", "runs/exp-tiny/results.json")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="benchmark speed, memory and scaling of triage",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small series and few repeats (CI, about a minute)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder (default bench-results)")
    p.add_argument("--cache", type=Path, help="folder for the generated series (default OUT/series-cache)")
    p.add_argument("--accuracy", type=Path,
                   help="`petriage experiment` results.json with per-model accuracy "
                        f"(default: the first of {', '.join(ACCURACY_FILES)} that exists)")
    p.add_argument("--models", nargs=2, metavar=("STAGE1", "STAGE2"),
                   help="benchmark these model names or checkpoint files (default: the shipped models, "
                        "else freshly built default models)")
    p.add_argument("--fresh-models", action="store_true",
                   help="time freshly built default models even when shipped ones are registered")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    p.add_argument("--only", nargs="+", choices=["throughput", "engines", "end_to_end", "comparators", "memory"],
                   help="run only these sections (memory includes the time-vs-slices fit; engines: "
                        "every inference path against the machine's measured limit)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from PETriageLib.bench.results import markdown, write_results
    from PETriageLib.bench.run_all import BenchPlan, run_bench

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {args.device} asked for, but CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the memory benchmark's subprocesses
    plan = BenchPlan.quick() if args.quick else BenchPlan()
    if args.no_compile:
        plan.compile = False
    if args.only:
        plan.sections = tuple(args.only)
    accuracy = args.accuracy or next((Path(f) for f in ACCURACY_FILES if Path(f).is_file()), None)
    results = run_bench(args.out, quick=args.quick, device=args.device, plan=plan, cache_dir=args.cache,
                        accuracy_file=accuracy, prefer_shipped=not args.fresh_models, models=args.models)
    paths = write_results(results, args.out)
    print(markdown(results))
    print(f"results: {paths['json']} and {paths['markdown']}")
    return 0
