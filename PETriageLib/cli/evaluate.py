"""`petriage evaluate`: the paper's slice and patient tables for a stage 1 + stage 2 pair."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a stage 1 + stage 2 pair on a manifest split",
                              description="Slice-level accuracy and per-class sensitivity, patient-level "
                                          "tables, AUROC with bootstrap CI, confusion matrices, calibration "
                                          "and ROC curves (report.json, report.md, roc_*.png).")
    p.add_argument("--manifest", required=True, nargs="+", help="data manifest CSV(s)")
    p.add_argument("--stage1", help="stage 1 checkpoint (file or registered model name)")
    p.add_argument("--stage2", help="stage 2 checkpoint (file or registered model name)")
    p.add_argument("--seg-model", default=None,
                   help="instead of a stage pair: score this embolus segmentation model (file or registered name) "
                        "against the manifest's masks, whole series in 3D, at its own operating point: Dice, "
                        "precision, recall, clots found, FP components, patient sensitivity / specificity with "
                        "95%% CIs, one row per lesion class the model segments (seg_report.md, seg_report.json)")
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
    if args.seg_model:
        return _run_segmentation(args, Path(splits))
    if not (args.stage1 and args.stage2):
        raise ValueError("give --stage1 and --stage2 (or --seg-model)")
    stage1, sha1 = resolve_model(args.stage1)
    stage2, sha2 = resolve_model(args.stage2)
    for path, sha in ((stage1, sha1), (stage2, sha2)):
        read_checkpoint(path, sha)  # a registered model must still match its manifest SHA256
    evaluate_cascade(stage1, stage2, args.manifest, args.out, args.cache or Path(args.out) / "cache", splits,
                     args.split, args.min_slices, args.bootstrap, patient_model=args.patient_model,
                     refiner=args.refiner)
    print((Path(args.out) / "report.md").read_text())
    return 0


def _run_segmentation(args: argparse.Namespace, splits_file) -> int:
    from pathlib import Path

    from PETriageLib.atomic import atomic_write
    from PETriageLib.vocabulary import LESION_TITLES
    from PETriageLib.reporting.json_text import to_json
    from PETriageLib.training.seg_manifest_run import evaluate_segmentation_model
    from PETriageLib.training.seg_volume_eval import evaluation_dict, results_text
    from PETriageLib.training.splits import load_splits

    scores, meta = evaluate_segmentation_model(args.seg_model, args.manifest, load_splits(splits_file), args.split)
    rows = [(f"{args.seg_model} on {args.split}" + ("" if c == "pe" else f", {LESION_TITLES[c]}"), ev)
            for c, ev in scores.items()]
    first = next(iter(scores.values()))
    text = results_text(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "seg_report.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    report = {"model": args.seg_model, "architecture": meta["architecture"], "split": args.split,
              "lesion_classes": list(scores), "scores": evaluation_dict(first),
              "class_scores": {c: evaluation_dict(ev) for c, ev in scores.items()}}
    atomic_write(out / "seg_report.json", lambda tmp: tmp.write_text(to_json(report, indent=1), encoding="utf-8"))
    print(text)
    return 0
