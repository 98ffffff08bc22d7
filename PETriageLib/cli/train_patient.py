"""`petriage train-patient`: a patient-level classifier (maxpool, BiLSTM, ensemble, or the cascade's own
score with a validation threshold) over a stage pair's slice features."""
from __future__ import annotations

import argparse

from PETriageLib.reporting.json_text import to_json


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Arguments every series model (patient classifier, slice refiner) takes: data and stage models."""
    p.add_argument("--manifest", required=True, nargs="+", help="data manifest CSV(s)")
    p.add_argument("--stage1", required=True, help="stage 1 checkpoint (file or registered model name)")
    p.add_argument("--stage2", required=True, help="stage 2 checkpoint (file or registered model name)")
    p.add_argument("--splits", required=True,
                   help="splits JSON: train and val patients (the splits the stages were trained with, or "
                        "one for new data); the stage models must never have seen the val patients")
    p.add_argument("--out", required=True, help="output folder (the model file, history.json, features/)")
    p.add_argument("--cache", default=None, help="slice cache folder (default OUT/cache)")
    p.add_argument("--features-dir", default=None,
                   help="where the slice features are kept (default OUT/features); share it between runs "
                        "that try other heads on the same stage models")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")


FEATURE_HELP = ("per slice: both stages' logits (scores), the logits and pooled last features (embeddings), "
                "or those and pooled earlier maps too (multiscale, DRN models)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-patient", help="train a patient-level PE classifier over a stage pair's slice features",
        description="Runs both stages on every slice with lung of the manifest's train and val patients, "
                    "trains a classifier that reads a series' slice features (maxpool: max over slices; "
                    "bilstm: a bidirectional LSTM over the slices in order) and sets its threshold on the "
                    "validation patients. Use it in triage with --patient-model (see docs/training.md).")
    add_data_args(p)
    p.add_argument("--head", choices=("maxpool", "bilstm", "ensemble", "score"), default="bilstm",
                   help="maxpool, bilstm, ensemble (both trained, their probabilities averaged), or score "
                        "(nothing trained: the cascade's patient score, max p(disease) x p(PE), with a "
                        "threshold set on the validation patients; reads only those)")
    p.add_argument("--features", choices=("scores", "embeddings", "multiscale"), default=None,
                   help=FEATURE_HELP + " (default embeddings; scores for --head score, the only kind it reads)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=15)
    p.add_argument("--target-sensitivity", type=float, default=1.0,
                   help="share of validation PE patients the stored threshold keeps (default 1.0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PETriageLib.models.fast import set_threads
    from PETriageLib.training.series_models.from_manifest import train_patient_from_manifest
    from PETriageLib.training.series_models.train_config import PatientTrainConfig

    set_threads(args.threads)
    features = args.features or ("scores" if args.head == "score" else "embeddings")
    cfg = PatientTrainConfig(head=args.head, features=features, hidden=args.hidden, epochs=args.epochs,
                             lr=args.lr, dropout=args.dropout, patience=args.patience,
                             target_sensitivity=args.target_sensitivity, seed=args.seed)
    result = train_patient_from_manifest(args.stage1, args.stage2, args.manifest, args.out,
                                         args.cache or Path(args.out) / "cache", args.splits, cfg,
                                         progress=not args.no_progress, feature_dir=args.features_dir)
    print(to_json(result, indent=1))
    return 0
