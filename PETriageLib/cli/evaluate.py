"""`petriage evaluate`: the paper's slice and patient tables for a stage 1 + stage 2 pair."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a stage 1 + stage 2 pair on a manifest split",
                              description="Slice-level accuracy and per-class sensitivity, patient-level "
                                          "tables, AUROC with bootstrap CI, confusion matrices, calibration "
                                          "and ROC curves (report.json, report.md, roc_*.png).")
    p.add_argument("--manifest", required=True, nargs="+", help="data manifest CSV(s)")
    p.add_argument("--stage1", required=True, help="stage 1 checkpoint (file or registered model name)")
    p.add_argument("--stage2", required=True, help="stage 2 checkpoint (file or registered model name)")
    p.add_argument("--out", required=True)
    p.add_argument("--splits", default=None, help="splits JSON; without it --split all evaluates every patient")
    p.add_argument("--split", default="test", help="which split to evaluate (default test; 'all' = whole manifest)")
    p.add_argument("--cache", default=None, help="slice cache folder (default OUT/cache)")
    p.add_argument("--min-slices", type=int, default=1, help="slices needed to call a patient positive")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the AUROC CI")
    p.add_argument("--patient-model", default=None,
                   help="also report this patient classifier (petriage train-patient) on the same patients")
    p.add_argument("--refiner", default=None,
                   help="score the slices as refined by this slice refiner (petriage train-refiner), at its thresholds")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is faster when other jobs share the CPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from PETriageLib.models.fast import set_threads
    from PETriageLib.models.checkpoint import read_checkpoint
    from PETriageLib.models.zoo import resolve_model
    from PETriageLib.training.evaluate import evaluate_cascade
    from PETriageLib.training.manifest import load_manifest

    set_threads(args.threads)
    splits = args.splits
    if args.split == "all":  # every patient of the manifest in one "all" split
        ids = sorted({s.patient_id for s in load_manifest(args.manifest)})
        splits = Path(args.out) / "splits-all.json"
        splits.parent.mkdir(parents=True, exist_ok=True)
        splits.write_text(json.dumps({"all": ids}))
    elif not splits:
        raise ValueError("--splits is needed unless --split all")
    stage1, sha1 = resolve_model(args.stage1)
    stage2, sha2 = resolve_model(args.stage2)
    for path, sha in ((stage1, sha1), (stage2, sha2)):
        read_checkpoint(path, sha)  # a registered model must still match its manifest SHA256
    evaluate_cascade(stage1, stage2, args.manifest, args.out, args.cache or Path(args.out) / "cache", splits,
                     args.split, args.min_slices, args.bootstrap, patient_model=args.patient_model,
                     refiner=args.refiner)
    print((Path(args.out) / "report.md").read_text())
    return 0
