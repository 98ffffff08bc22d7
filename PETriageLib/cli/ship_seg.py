"""`petriage ship-seg`: register a trained segmentation / non-contrast model with its model card."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ship-seg", help="register a petriage train-seg --anatomy real run as a shipped model, with its card",
        description="Copies one run's checkpoint of a train-seg --anatomy real folder into Resources/models/ and "
                    "lists it under segmentation_models in Resources/models.json; its card gives the run's "
                    "held-out scores (evaluation.json) beside the paper's. The first model of a task listed "
                    "is what petriage triage --seg-model default / --nct-model default use.")
    p.add_argument("run_dir", help="the train-seg --out folder (holds evaluation.json and the checkpoints)")
    p.add_argument("label", help="the run, as evaluation.json names it, e.g. 'cpmn (full)' or fusa_resunet")
    p.add_argument("name", help="the registered name, e.g. cpmn_demo_nct")
    p.add_argument("--resources", help="the Resources/ folder (default: $PETRIAGE_RESOURCES or the repository's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PETriageLib.training.seg_ship import ship_segmentation

    entry = ship_segmentation(args.run_dir, args.label, args.name, args.resources)
    print(f"registered {entry['name']} ({entry['task']}) -> {entry['file']} sha256 {entry['sha256'][:12]}")
    return 0
