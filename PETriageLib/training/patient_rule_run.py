"""`petriage patient-rule`'s work: choose a pair's patient rule on one evaluation (the validation
series), score it and the slice operating points on the others (the test sets), write
patient_rule.json / patient_rule.md, and optionally register the rule with its card.

Each evaluation is a ``petriage evaluate`` output folder: its report.json names the pair and its
slices.csv holds both stages' probabilities per slice, so no model runs here.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PETriageLib.atomic import atomic_write
from PETriageLib.models.checkpoint import file_sha256
from PETriageLib.models.patient_rules import PatientRule, register_patient_rule
from PETriageLib.training.patient_rule import (RuleScore, SeriesProbabilities, choose_patient_rule, read_slice_csv,
                                               rule_table, score_rule)

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """One ``petriage evaluate`` folder: the pair it ran and its series' probabilities."""

    label: str
    folder: Path
    stage1: Path
    stage2: Path
    series: list[SeriesProbabilities]
    sha256: "tuple[str, str]"  # of the two checkpoints evaluated, as report.json records them
    thresholds: "tuple[float, float]"  # their slice operating points

    @classmethod
    def read(cls, label: str, folder: "str | Path") -> "Evaluation":
        folder = Path(folder)
        report = folder / "report.json"
        if not report.is_file():
            raise FileNotFoundError(f"{folder} is not a petriage evaluate output (no report.json)")
        data = json.loads(report.read_text(encoding="utf-8"))
        if data.get("refiner"):
            raise ValueError(f"{folder} scored refined slices (--refiner); a patient rule is chosen on the stages' own "
                             "probabilities, as triage runs them without a refiner")
        if "stage1_sha256" not in data:
            raise ValueError(f"{report} does not record its checkpoints' SHA256 (an older petriage evaluate); "
                             "run the evaluation again")
        ev = cls(label, folder, Path(data["stage1_checkpoint"]), Path(data["stage2_checkpoint"]),
                 read_slice_csv(folder / "slices.csv"), (data["stage1_sha256"], data["stage2_sha256"]),
                 (float(data["thresholds"]["stage1"]), float(data["thresholds"]["stage2"])))
        for path, sha in zip((ev.stage1, ev.stage2), ev.sha256):
            if not path.is_file() or file_sha256(path) != sha:
                raise ValueError(f"{path} is no longer the checkpoint {folder} evaluated (SHA256 {sha[:12]}...): "
                                 "a rule must be chosen on the probabilities of the weights it is bound to")
        return ev

    @classmethod
    def pooled(cls, label: str, folders: Sequence["str | Path"]) -> "Evaluation":
        """Several evaluations of one pair as one set of series (e.g. validation sets of several seeds)."""
        parts = [cls.read(label, f) for f in folders]
        for part in parts[1:]:
            if part.pair_sha256() != parts[0].pair_sha256():
                raise ValueError(f"{part.folder} evaluated another stage pair than {parts[0].folder}")
        return cls(label, parts[0].folder, parts[0].stage1, parts[0].stage2, [s for p in parts for s in p.series],
                   parts[0].sha256, parts[0].thresholds)

    def pair_sha256(self) -> "tuple[str, str]":
        return self.sha256


@dataclass
class PatientRuleRun:
    """The chosen rule, its validation score, and per test set the rule's and the slice points' scores."""

    rule: PatientRule
    stage_sha256: "tuple[str, str]"
    validation: tuple[str, RuleScore]
    tests: list[tuple[str, RuleScore]]
    slice_points: list[tuple[str, RuleScore]]  # the checkpoints' own thresholds, any slice, on every set

    def to_dict(self) -> dict[str, Any]:
        return {"rule": {"threshold_disease": self.rule.threshold_disease, "threshold_pe": self.rule.threshold_pe,
                         "min_run": self.rule.min_run, "target_sensitivity": self.rule.target_sensitivity,
                         "text": self.rule.describe()},
                "stage1_sha256": self.stage_sha256[0], "stage2_sha256": self.stage_sha256[1],
                "validation": {"set": self.validation[0], **self.validation[1].to_dict()},
                "tests": [{"set": name, **score.to_dict()} for name, score in self.tests],
                "slice_operating_points": [{"set": name, **score.to_dict()} for name, score in self.slice_points]}

    def markdown(self) -> str:
        rows = [(f"{self.validation[0]} (the rule was chosen here)", self.validation[1]), *self.tests]
        return "\n".join([
            f"# Patient rule: {self.rule.describe()}", "",
            f"Chosen for a patient PE sensitivity of at least {self.rule.target_sensitivity:.0%} on the validation "
            "series, with the highest specificity there. Counts are series; intervals are Wilson 95%.", "",
            rule_table(rows), "",
            "## For comparison: the checkpoints' slice operating points (any slice flags)", "",
            rule_table(self.slice_points), ""])


def run_patient_rule(validation: Evaluation, tests: Sequence[Evaluation], target_sensitivity: float = 0.95
                     ) -> PatientRuleRun:
    """Choose on ``validation``, score on ``tests``; every evaluation must be of the same pair."""
    pair = validation.pair_sha256()
    for ev in tests:
        if ev.pair_sha256() != pair:
            raise ValueError(f"{ev.folder} evaluated another stage pair than {validation.folder}; "
                             "a rule belongs to one pair")
    chosen = choose_patient_rule(validation.series, target_sensitivity)
    slice_rule = PatientRule(*validation.thresholds, 1)  # the checkpoints' own points, any slice
    every = [validation, *tests]
    return PatientRuleRun(chosen.rule, pair, (validation.label, chosen),
                          [(ev.label, score_rule(ev.series, chosen.rule)) for ev in tests],
                          [(ev.label, score_rule(ev.series, slice_rule)) for ev in every])


def write_patient_rule(run: PatientRuleRun, out: "str | Path") -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(run.to_dict(), indent=2) + "\n"
    atomic_write(out / "patient_rule.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    atomic_write(out / "patient_rule.md", lambda tmp: tmp.write_text(run.markdown(), encoding="utf-8"))
    log.info("patient rule written to %s", out)
    return out / "patient_rule.md"


def register_run(run: PatientRuleRun, name: str, validation_data: str,
                 resources: "str | Path | None" = None) -> dict:
    """Register the chosen rule for its pair, its card quoting every set's counts."""
    from dataclasses import replace

    figures = run.to_dict()
    for block in [figures["validation"], *figures["tests"], *figures["slice_operating_points"]]:
        block.pop("flagged")  # per-patient lists stay in patient_rule.json, not in the card
    card = {"intended_use": "The default patient PE rule of its stage pair in petriage triage (--operating-point "
                            "patient). Demonstration and software testing only, like the pair: NOT for clinical use.",
            "training_data": f"Chosen on {validation_data}: the highest patient specificity among the rules reaching "
                             f"{run.rule.target_sensitivity:.0%} patient PE sensitivity there.",
            "limits": "Chosen and tested on synthetic phantoms; the intervals are wide at these patient counts. "
                      "A rule chosen on one kind of data holds only on that kind.",
            "metrics": {"validation": figures["validation"], "tests": figures["tests"],
                        "slice_operating_points": figures["slice_operating_points"]}}
    rule = replace(run.rule, name=name)
    return register_patient_rule(rule, run.stage_sha256[0], run.stage_sha256[1], card, resources)
