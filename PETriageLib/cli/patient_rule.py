"""`petriage patient-rule`: choose a stage pair's patient PE rule on validation patients."""
from __future__ import annotations

import argparse


def _labelled(text: str) -> "tuple[str, str]":
    label, sep, folder = text.partition("=")
    if not sep or not label or not folder:
        raise argparse.ArgumentTypeError(f"expected LABEL=FOLDER, got {text!r}")
    return label, folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "patient-rule", help="choose a pair's patient PE rule (thresholds, run of slices) on validation patients",
        description="Searches the stage 1 and stage 2 thresholds and the number of consecutive PE slices that "
                    "flag a patient for the highest patient specificity among the rules that reach the target "
                    "patient PE sensitivity on the validation series, then scores that rule and the checkpoints' "
                    "slice operating points on each test set, with Wilson 95%% intervals (patient_rule.json, "
                    "patient_rule.md). Reads petriage evaluate output folders; runs no model. With --register "
                    "the rule becomes the pair's default in petriage triage (--operating-point patient).")
    p.add_argument("--validation", required=True, nargs="+", metavar="FOLDER",
                   help="petriage evaluate --out folder(s) of the validation patients (never the test patients); "
                        "several are pooled")
    p.add_argument("--test", action="append", type=_labelled, default=[], metavar="LABEL=FOLDER",
                   help="a petriage evaluate --out folder of a test set, with its label; repeatable")
    p.add_argument("--target", type=float, default=0.95,
                   help="patient PE sensitivity the rule must reach on validation (default 0.95)")
    p.add_argument("--out", required=True, help="folder for patient_rule.json and patient_rule.md")
    p.add_argument("--register", metavar="NAME", help="register the rule under this name in Resources/models.json")
    p.add_argument("--validation-data", default=None,
                   help="what the validation patients are, for the card (default: the validation folder)")
    p.add_argument("--resources", help="the Resources/ folder (default: $PETRIAGE_RESOURCES or the repository's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PETriageLib.training.patient_rule_run import Evaluation, register_run, run_patient_rule, write_patient_rule

    if not 0.0 < args.target <= 1.0:
        raise ValueError(f"--target must be in (0, 1], got {args.target}")
    validation = Evaluation.pooled("validation", args.validation)
    tests = [Evaluation.read(label, folder) for label, folder in args.test]
    result = run_patient_rule(validation, tests, args.target)
    md = write_patient_rule(result, args.out)
    print(md.read_text(encoding="utf-8"))
    if args.register:
        entry = register_run(result, args.register, args.validation_data or ", ".join(args.validation), args.resources)
        print(f"registered patient rule {entry['name']} for the pair {entry['stage1_sha256'][:12]} / "
              f"{entry['stage2_sha256'][:12]}")
    return 0
