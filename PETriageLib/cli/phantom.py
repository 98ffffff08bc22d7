"""`petriage phantom`: write a data set of synthetic chest CT studies with ground truth."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger("petriage.phantom")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _slices(text: str) -> "int | tuple[int, int]":
    """'150' or a range '40-80' drawn per study."""
    lo, _, hi = text.partition("-")
    try:
        return (int(lo), int(hi)) if hi else int(lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {text!r}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser("phantom", help="write synthetic chest CT studies (DICOM + labels + masks)",
                              description="Write a data set of synthetic chest CT phantoms with exact ground "
                                          "truth: one DICOM series, labels.csv, mask.nrrd and study.json per "
                                          "patient, plus manifest.csv.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--patients", type=int, default=10, help="number of studies (default 10)")
    p.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    p.add_argument("--pe-fraction", type=_fraction, default=0.5, help="fraction of patients with PE (0.5)")
    p.add_argument("--other-fraction", type=_fraction, default=0.35,
                   help="fraction of patients with other lung disease (0.35)")
    p.add_argument("--contrast", choices=["ctpa", "none", "mixed"], default="mixed",
                   help="contrast phase; 'mixed' keeps some non-contrast studies without PE")
    p.add_argument("--difficulty", choices=["mixed", "easy", "hard"], default="mixed",
                   help="easy = central/lobar emboli, hard = segmental/subsegmental")
    p.add_argument("--matrix", type=int, default=512, help="pixels per side (anatomy keeps its size in mm)")
    p.add_argument("--slices", type=_slices, default=None, help="slices per study: N or MIN-MAX (default 60-300)")
    real = p.add_argument_group("real anatomy (--anatomy real: lungs and vessels of real CAD-PE cases)")
    real.add_argument("--anatomy", choices=["formula", "real"], default="real",
                      help="real: built on a real case's masks (default); formula: analytic anatomy")
    real.add_argument("--cases-dir", default=None,
                      help="folder of ID.nii.gz (1 artery, 2 vein) + ID_lungmask.nii.gz "
                           "(default ../shared/data/real/cadpe-vessels)")
    real.add_argument("--case", action="append", default=None, help="case ID to use (repeatable; default: all)")
    real.add_argument("--phase", choices=["ctpa", "non_contrast", "both"], default="both",
                      help="phase(s) written per patient, same geometry and labels (default both)")
    real.add_argument("--kernel", choices=["soft", "sharp"], default="soft", help="noise texture (default soft)")
    real.add_argument("--slice-thickness", type=float, default=None,
                      help="resample to this slice thickness, 0.6-5 mm (default: the case's own)")
    real.add_argument("--pixel", type=float, default=None, help="in-plane pixel, mm (default: the case's own)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from PETriageLib.phantom import generate_dataset

    if args.patients < 1:
        raise ValueError(f"--patients must be at least 1, got {args.patients}")
    if args.anatomy == "real":
        return _run_real(args)
    with tqdm(total=args.patients, unit="study", desc="phantom") as bar:
        manifest = generate_dataset(args.out, args.patients, args.seed, pe_fraction=args.pe_fraction,
                                    other_fraction=args.other_fraction, contrast=args.contrast,
                                    matrix=args.matrix, slices=args.slices, difficulty=args.difficulty,
                                    progress=lambda done, total: bar.update(1))
    print(manifest)
    return 0


def _run_real(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from PETriageLib.phantom.cases_dir import require_cases_dir
    from PETriageLib.phantom.real_dataset import generate_real_dataset
    from PETriageLib.phantom.real_study import RealOptions

    cases_dir = require_cases_dir(args.cases_dir)
    phases = ("ctpa", "non_contrast") if args.phase == "both" else (args.phase,)
    base = RealOptions(difficulty=args.difficulty, kernel=args.kernel, slice_thickness=args.slice_thickness,
                       pixel_mm=args.pixel)
    with tqdm(total=args.patients, unit="study", desc="phantom") as bar:
        manifest = generate_real_dataset(args.out, cases_dir, args.patients, args.seed, cases=args.case,
                                         phases=phases, pe_fraction=args.pe_fraction,
                                         other_fraction=args.other_fraction, base=base,
                                         progress=lambda done, total: bar.update(1))
    print(manifest)
    return 0
