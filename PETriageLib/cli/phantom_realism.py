"""`petriage phantom-realism`: how far the formula and the real-anatomy phantoms are from real CT."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "phantom-realism", help="measure the phantoms against the real CT of ../shared/data (tissue HU, noise "
                                "spectrum, a classifier two-sample test)",
        description="Builds formula and real-anatomy phantoms without findings (non-contrast, with their CTPA "
                    "rendering for the artery HU), reads the real non-contrast series of ../shared/data/real "
                    "and the real contrast crop, and measures: HU mean and spread per tissue, the noise power "
                    "spectrum in uniform soft tissue, and the out-of-fold AUROC of a classifier that tells real "
                    "slices from phantom slices (cross-validated by patient). Prints the tables and writes "
                    "realism.md and realism.json into --out.")
    p.add_argument("--out", type=Path, required=True, help="folder for realism.md and realism.json")
    p.add_argument("--formula-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5],
                   help="seeds of the formula phantoms (default 0-5)")
    p.add_argument("--cases", nargs="+", default=None,
                   help="CAD-PE case ids of the real-anatomy phantoms (default: six held-back cases)")
    p.add_argument("--slice-thickness", type=float, default=5.0, help="phantom slice thickness in mm (default 5)")
    p.add_argument("--slices-per-series", type=int, default=40, help="slices per series for the two-sample test")
    p.add_argument("--real-dir", type=Path, default=None, help="the shared data's real/ folder (default ../shared/data/real)")
    p.add_argument("--cases-dir", type=Path, default=None, help="CAD-PE vessel masks (default real/cadpe-vessels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from PETriageLib.atomic import atomic_write
    from PETriageLib.bench.realism.realism_run import RealismOptions, run_realism
    from PETriageLib.bench.realism.sets import DEFAULT_CASES
    from PETriageLib.bench.realism.realism_tables import realism_markdown
    from PETriageLib.reporting.json_text import to_json

    options = RealismOptions(formula_seeds=tuple(args.formula_seeds), cases=tuple(args.cases or DEFAULT_CASES),
                             slice_thickness=args.slice_thickness, slices_per_series=args.slices_per_series,
                             seed=args.seed, real_dir=args.real_dir, cases_dir=args.cases_dir)
    with tqdm(unit="series", desc="realism", disable=True if args.no_progress else None) as bar:
        def progress(done: int, total: int, _message: str) -> None:
            bar.total = total
            bar.update(done - bar.n)
        report = run_realism(options, progress)
    text = realism_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "realism.md", lambda tmp: tmp.write_text(text))
    atomic_write(args.out / "realism.json", lambda tmp: tmp.write_text(to_json(report.to_dict(), indent=1)))
    print(text)
    return 0
