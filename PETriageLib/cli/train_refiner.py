"""`petriage train-refiner`: a BiLSTM over a stage pair's slice features that re-scores every slice."""
from __future__ import annotations

import argparse

from PETriageLib.cli.train_patient import FEATURE_HELP, add_data_args
from PETriageLib.reporting.json_text import to_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-refiner", help="train a slice refiner: both stages' slice probabilities re-scored with the "
                              "neighbouring slices in view",
        description="Runs both stages on every slice with lung of the manifest's train and val patients, "
                    "trains a bidirectional LSTM over each series' slice features to predict every slice's "
                    "stage 1 and stage 2 labels, and sets both thresholds on the validation patients (as the "
                    "stages do). Use it in triage and evaluate with --refiner (see docs/training.md).")
    add_data_args(p)
    p.add_argument("--features", choices=("scores", "embeddings", "multiscale"), default="scores", help=FEATURE_HELP)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--target-sensitivity", type=float, nargs=2, default=(0.95, 0.98), metavar=("STAGE1", "STAGE2"),
                   help="shares of validation diseased and PE slices the thresholds keep (default 0.95 0.98)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PETriageLib.models.fast import set_threads
    from PETriageLib.training.series_models.from_manifest import train_refiner_from_manifest
    from PETriageLib.training.series_models.train_config import RefinerTrainConfig

    set_threads(args.threads)
    cfg = RefinerTrainConfig(features=args.features, hidden=args.hidden, epochs=args.epochs, lr=args.lr,
                             dropout=args.dropout, patience=args.patience,
                             target_sensitivity=tuple(args.target_sensitivity), seed=args.seed)
    result = train_refiner_from_manifest(args.stage1, args.stage2, args.manifest, args.out,
                                         args.cache or Path(args.out) / "cache", args.splits, cfg,
                                         progress=not args.no_progress, feature_dir=args.features_dir)
    print(to_json(result, indent=1))
    return 0
