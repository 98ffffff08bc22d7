"""`petriage train-seg`: train embolus segmentation models (or CPMN) on phantoms and score them."""
from __future__ import annotations

import argparse

ABLATIONS = {"full": (True, True), "no-ifa": (False, True), "no-ifd": (True, False), "neither": (False, False)}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-seg", help="train embolus segmentation models (ResUnet, FUSA-ResUnet, DRN head, CPMN) on phantoms",
        description="Generates easy-PE phantom studies, trains each --model on the embolus slices of the "
                    "training seeds (Dice + BCE; CPMN on CTPA/NCT pairs with IFA and IFD), scores it on held-out "
                    "seeds (CPMN on their NCT slices) and prints the table (see docs/segmentation.md).")
    p.add_argument("--model", action="append", help="model name (repeatable; default fusa_resunet)")
    p.add_argument("--ablation", action="append", choices=sorted(ABLATIONS),
                   help="CPMN loss terms (repeatable; default full)")
    p.add_argument("--train-patients", type=int, default=6)
    p.add_argument("--eval-patients", type=int, default=3)
    p.add_argument("--eval-negatives", type=int, default=2, help="held-out studies without PE")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--matrix", type=int, default=96)
    p.add_argument("--slices", type=int, default=24)
    p.add_argument("--crop", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--anatomy", choices=("formula", "real"), default="formula",
                   help="real: paired CTPA/NCT phantoms on real CAD-PE cases (scripts/real_anatomy_split.json), "
                        "scored as whole held-back studies with per-clot-level tables")
    p.add_argument("--manifest", help="train on your own series instead of phantoms: a training manifest whose "
                   "'mask' column gives each series' PE mask (1 = PE, on the series' grid); split by its split "
                   "column or --splits; cross-phase models (cpmn) need a 'contrast' column (ctpa / none) with both "
                   "phases of each patient on one grid")
    p.add_argument("--splits", help="--manifest: the splits JSON to use, or to write when new (default OUT/splits.json)")
    p.add_argument("--cases-dir", help="CAD-PE vessel masks (default ../shared/data/real/cadpe-vessels)")
    p.add_argument("--validation-patients", type=int, default=4, help="real: training-split cases that choose "
                   "the operating point (PE + no-PE study each)")
    p.add_argument("--pixel-mm", type=float, default=1.2, help="real: pixel size of training and inference")
    p.add_argument("--slice-thickness", type=float, default=2.5, help="real: slice thickness in mm")
    p.add_argument("--patch", type=int, default=64, help="real: training patch side in pixels")
    p.add_argument("--ifd-margin", type=float, default=1.0, help="CPMN: the IFD hinge margin")
    p.add_argument("--lesion-classes", default="pe", help="--manifest, resunet / fusa_resunet: the lesion classes "
                   "to segment, one output channel each, comma-separated: pe (mask code 1), other (any other "
                   "non-zero code: other lung disease); e.g. pe,other. Each gets its own operating point and table "
                   "row")
    p.add_argument("--out", help="folder for the checkpoints (none written without it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PETriageLib.models.registry import model_task
    from PETriageLib.training.seg_eval import lesion_class_table, segmentation_table
    from PETriageLib.training.seg_phantom_run import PhantomSegData, run_phantom_segmentation
    from PETriageLib.training.segmentation import SegTrainConfig

    from PETriageLib.models.seg_base import DEFAULT_CLASSES, lesion_classes

    classes = lesion_classes([c.strip() for c in args.lesion_classes.split(",") if c.strip()])
    if classes != DEFAULT_CLASSES and not args.manifest:
        raise SystemExit("--lesion-classes needs --manifest (phantom runs segment the embolus only)")
    configs = []
    for name in args.model or ["fusa_resunet"]:
        model_task(name)  # unknown names fail here, before any phantom is made
        if classes != DEFAULT_CLASSES and name not in ("resunet", "fusa_resunet"):
            raise SystemExit(f"--lesion-classes {args.lesion_classes}: only resunet and fusa_resunet segment more "
                             f"than the embolus, not {name}")
        ablations = (args.ablation or ["full"]) if model_task(name) == "cross_phase" else ["full"]
        for ab in ablations:
            ifa, ifd = ABLATIONS[ab]
            configs.append(SegTrainConfig(model=name, width=args.width, steps=args.steps, lr=args.lr,
                                          seed=args.seed, ifa=ifa, ifd=ifd, ifd_margin=args.ifd_margin,
                                          classes=classes))
    if args.manifest:
        return _run_manifest(args, configs)
    if args.anatomy == "real":
        return _run_real(args, configs)
    n, m = args.train_patients, args.eval_patients
    data = PhantomSegData(range(n), range(n, n + m), range(1000, 1000 + args.eval_negatives), args.matrix,
                          args.slices, args.crop)
    runs = run_phantom_segmentation(data, configs, args.out)
    print(segmentation_table([(r.label, r.evaluation) for r in runs]))
    for r in runs:
        print(f"\n{r.label}: lesion classes by size" + (f" (checkpoint {r.checkpoint})" if r.checkpoint else ""))
        print(lesion_class_table(r.evaluation))
    return 0


def _run_real(args: argparse.Namespace, configs: list) -> int:
    import json
    from pathlib import Path

    from PETriageLib.phantom.cases_dir import require_cases_dir
    from PETriageLib.training.seg_real_data import RealSegSpec
    from PETriageLib.training.seg_real_run import RealSegPlan, result_rows, run_real_segmentation
    from PETriageLib.training.seg_volume_eval import results_text

    split = json.loads((Path(__file__).resolve().parents[2] / "scripts" / "real_anatomy_split.json").read_text())
    train_cases, test_cases = split["train_cases"], split["test_cases"]
    n, v, m = args.train_patients, args.validation_patients, args.eval_patients
    if n + v > len(train_cases) or m > len(test_cases):
        raise SystemExit(f"the split has {len(train_cases)} training and {len(test_cases)} held-back cases")
    seed = 100 * args.seed
    train = [(c, seed + i, True) for i, c in enumerate(train_cases[:n])]
    val = [(c, seed + i + k, k == 0) for i, c in enumerate(train_cases[n:n + v]) for k in (0, 1)]
    test = [(c, seed + i + k, k == 0) for i, c in enumerate(test_cases[:m]) for k in (0, 1)]
    plan = RealSegPlan(Path(require_cases_dir(args.cases_dir)), train, val, test,
                       RealSegSpec(args.pixel_mm, args.slice_thickness), args.patch)
    print(results_text(result_rows(run_real_segmentation(plan, configs, args.out or "seg_models_real"))))
    return 0


def _run_manifest(args: argparse.Namespace, configs: list) -> int:
    from pathlib import Path

    from PETriageLib.training.seg_manifest_run import ManifestSegPlan, run_manifest_segmentation
    from PETriageLib.training.seg_real_run import result_rows
    from PETriageLib.training.seg_volume_eval import results_text

    if not args.out:
        raise SystemExit("--manifest needs --out (the checkpoints, splits.json and evaluation.json go there)")
    plan = ManifestSegPlan(Path(args.manifest), Path(args.splits) if args.splits else None, args.pixel_mm, args.patch)
    print(results_text(result_rows(run_manifest_segmentation(plan, configs, args.out))))
    return 0
