"""Patient rules: how a stage pair turns slice probabilities into a patient PE flag, and where the
shipped ones live (Resources/models.json, section ``patient_rules``).

A rule is the two stage thresholds and ``min_run``: a patient is flagged for PE when ``min_run``
consecutive slices pass both stages. The slice operating points stored in the checkpoints are set
for slice sensitivity and flag nearly every patient; a patient rule is chosen on validation
patients for a patient sensitivity target with the highest specificity there
(``training.patient_rule``, ``petriage patient-rule``). A registered rule is bound to its pair by
both checkpoints' SHA256, like the series models.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from PETriageLib.errors import CheckpointError
from PETriageLib.models.zoo import CARD_KEYS, manifest_path, put_entry, read_manifest, resources_dir
from PETriageLib.vocabulary import is_probability

SECTION = "patient_rules"
RULE_KEYS = ("name", "stage1_sha256", "stage2_sha256", "threshold_disease", "threshold_pe", "min_run",
             "target_sensitivity", "card")


@dataclass(frozen=True)
class PatientRule:
    """Stage thresholds and the run of consecutive PE slices that flags a patient."""

    threshold_disease: float
    threshold_pe: float
    min_run: int = 1
    name: str = ""  # the registered name; empty for a rule not (yet) in the manifest
    target_sensitivity: float | None = None  # the patient sensitivity it was chosen for

    def __post_init__(self) -> None:
        for field in ("threshold_disease", "threshold_pe"):
            if not is_probability(getattr(self, field)):
                raise ValueError(f"{field} must be a number in [0, 1], got {getattr(self, field)!r}")
        if not isinstance(self.min_run, int) or isinstance(self.min_run, bool) or self.min_run < 1:
            raise ValueError(f"min_run must be a whole number >= 1, got {self.min_run!r}")

    def describe(self) -> str:
        run = "any slice" if self.min_run == 1 else f"{self.min_run} consecutive slices"
        return (f"p(disease) >= {self.threshold_disease:g} and p(PE) >= {self.threshold_pe:g} on {run}")


def _rule_of(entry: Any, where: os.PathLike) -> PatientRule:
    if not isinstance(entry, dict) or any(k not in entry for k in RULE_KEYS):
        raise CheckpointError(f"{where}: patient rule entry {entry!r} needs the keys {list(RULE_KEYS)}")
    missing = [k for k in CARD_KEYS if k not in entry["card"]]
    if missing:
        raise CheckpointError(f"{where}: the card of patient rule {entry['name']!r} lacks {missing}")
    try:
        return PatientRule(float(entry["threshold_disease"]), float(entry["threshold_pe"]), int(entry["min_run"]),
                           str(entry["name"]), float(entry["target_sensitivity"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: patient rule {entry['name']!r}: {exc}") from None


def read_patient_rules(resources: "str | os.PathLike | None" = None) -> list[dict]:
    """The manifest's ``patient_rules`` entries, each checked (keys, card, threshold values)."""
    entries = read_manifest(resources).get(SECTION, [])
    for entry in entries:
        _rule_of(entry, manifest_path(resources))
    return entries


def rule_for_pair(stage1_ids: Sequence[str], stage2_ids: Sequence[str],
                  resources: "str | os.PathLike | None" = None) -> PatientRule | None:
    """The registered rule of this stage pair (each stage given by its SHA256 identities), or None."""
    for entry in read_patient_rules(resources):
        if entry["stage1_sha256"] in stage1_ids and entry["stage2_sha256"] in stage2_ids:
            return _rule_of(entry, manifest_path(resources))
    return None


def register_patient_rule(rule: PatientRule, stage1_sha256: str, stage2_sha256: str, card: Mapping[str, Any],
                          resources: "str | os.PathLike | None" = None) -> dict:
    """Add (or replace, by name) the rule of a stage pair in the manifest; returns the entry."""
    if not rule.name:
        raise ValueError("a registered patient rule needs a name")
    entry = {"name": rule.name, "stage1_sha256": stage1_sha256, "stage2_sha256": stage2_sha256,
             "threshold_disease": rule.threshold_disease, "threshold_pe": rule.threshold_pe,
             "min_run": rule.min_run, "target_sensitivity": rule.target_sensitivity, "card": dict(card)}
    root = manifest_path(resources or resources_dir()).parent
    _rule_of(entry, manifest_path(root))
    others = [e for e in read_patient_rules(root) if e["name"] != rule.name
              and (e["stage1_sha256"], e["stage2_sha256"]) == (stage1_sha256, stage2_sha256)]
    if others:  # one rule per pair, so that triage's default is never ambiguous
        raise CheckpointError(f"the stage pair already has the patient rule {others[0]['name']!r}; "
                              "remove it from the manifest first")
    put_entry(root, SECTION, entry)
    return entry
