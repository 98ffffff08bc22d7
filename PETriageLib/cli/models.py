"""`petriage models`: the registered models with parameter counts and FLOPs at an input size."""
from __future__ import annotations

import argparse

from PETriageLib.reporting.json_text import to_json



def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the model architectures with parameters and FLOPs",
                              description="List the registered models (parameters, GFLOPs per slice).")
    p.add_argument("names", nargs="*", help="only these models (default: all)")
    p.add_argument("--size", type=int, default=160, help="input size in pixels for the FLOP count (default 160)")
    p.add_argument("--windows", default="vascular,lung", help="comma-separated window names (default vascular,lung)")
    p.add_argument("--width", type=float, default=None, help="width multiplier for the DRN family (default 1.0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PETriageLib.models.registry import describe_models, summary_dicts

    if args.size < 64:
        raise ValueError(f"--size must be at least 64 px, got {args.size}")
    windows = tuple(w.strip() for w in args.windows.split(",") if w.strip())
    rows = describe_models(args.size, windows, args.width, args.names or None)
    if args.json:
        print(to_json(summary_dicts(rows), indent=2))
        return 0
    print(f"windows {','.join(windows)}, input {args.size}x{args.size}, GFLOPs per slice (forward)")
    print(f"{'name':<16} {'params (M)':>10} {'GFLOPs':>8}  config / description")
    for r in rows:
        config = ",".join(f"{k}={v}" for k, v in r.config.items())
        print(f"{r.name:<16} {r.params / 1e6:>10.2f} {r.gflops:>8.2f}  {config}  {r.description}")
    return 0
