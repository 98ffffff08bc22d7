"""`petriage experiment`: the paper's model comparison on synthetic phantoms, sized tiny|small|full."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("experiment", help="reproduce the paper's model comparison on synthetic data",
                              description="Backbones (ResNet-50, DRN, EfficientNet-B5, CBAMDRN) with fixed vs "
                                          "dynamic crop, and window sets (single, DWL, MWL), for both stages, on "
                                          "generated phantoms. tiny: minutes; small: about an hour on a CPU; full: "
                                          "many hours (use a GPU). Re-running continues an interrupted run.")
    p.add_argument("--out", required=True, help="output folder (data, runs, results.json, results.md)")
    p.add_argument("--size", choices=("tiny", "small", "full"), default="tiny")
    p.add_argument("--stages", default="1,2", help="stages to run (default 1,2)")
    p.add_argument("--only", default=None, help="comma-separated variant keys (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PETriageLib.training.experiment import run_experiment

    only = [k.strip() for k in args.only.split(",")] if args.only else None
    run_experiment(args.out, args.size, args.seed, [int(s) for s in args.stages.split(",")], only, args.device)
    print((Path(args.out) / "results.md").read_text())
    return 0
