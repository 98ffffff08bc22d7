"""`petriage demo --out DIR`: generate a synthetic CTPA study with pulmonary emboli, triage it
with the shipped demo models (Resources/models.json) and write the report.

The study's DICOM series, its ground-truth labels and mask go to DIR/study/, the report to
DIR/report/. Prints the verdict, the ground truth and where the report is.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from PETriageLib.vocabulary import SLICE_LABELS
from PETriageLib.cli.triage import TqdmProgress, add_cascade_options, cascade_from_args, screen_options

log = logging.getLogger("petriage.demo")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="triage a generated synthetic PE study with the shipped models",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("petriage-demo"), help="output folder (default petriage-demo)")
    p.add_argument("--seed", type=int, default=7, help="phantom seed (default 7)")
    # 120 slices keeps the demo around a minute on a 2-core CPU; 0 lets the phantom choose (60-300).
    p.add_argument("--slices", type=int, default=120, help="number of slices (default 120; 0: the phantom's choice)")
    p.add_argument("--matrix", type=int, default=512, help="pixels per side (default 512)")
    p.add_argument("--no-pe", action="store_true", help="generate a study without PE instead")
    p.add_argument("--anatomy", choices=["real", "formula"], default="real",
                   help="real: a CTPA phantom on a CAD-PE case of ../shared/data (default; falls back to "
                        "formula with a warning where absent); formula: the analytic phantom")
    add_cascade_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PETriageLib.cli.demo_study import make_demo_study
    from PETriageLib.screening.one_series import screen_files

    quiet = logging.getLogger().level > logging.INFO
    cascade = cascade_from_args(args)  # first, so a missing model fails before the phantom is made
    demo = make_demo_study(args.out, args.seed, not args.no_pe, args.anatomy, matrix=args.matrix,
                           slices=args.slices or None)
    study = demo.study
    bar = TqdmProgress("triage", disable=quiet)
    try:
        screened = screen_files(cascade, demo.series_dir, options=screen_options(args),
                                out_dir=args.out / "report", progress=bar)
    finally:
        bar.close()
    v, files = screened.result.verdict, screened.files
    truth = {lab: study.slice_labels.count(lab) for lab in SLICE_LABELS}
    print(f"verdict: {v.verdict} ({v.reason})")
    print(f"ground truth ({demo.anatomy} anatomy, {demo.source}): {study.patient_label}; slices {truth}")
    print(f"report: {files.summary} and {files.report_json}")
    print("note: the shipped demo models were trained briefly on synthetic phantoms; they are weak "
          "(see docs/training.md) and not for clinical use")
    return 0
