"""Which pathway triages a series: the CTPA cascade or the non-contrast (NCT) model, from the
measured contrast phase or the user's --phase, and why, in words report.json and summary.md show."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from PETriageLib.preprocess.contrast_phase import ContrastPhase


@dataclass(frozen=True)
class PhaseDecision:
    requested: str  # auto | ctpa | nct
    used: str  # ctpa | nct
    measured_blood_hu: float | None
    reason: str
    warning: str | None = None  # what the reader must know about the choice (also in the result's warnings)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("warning")
        return d


def _non_contrast_warning(phase: ContrastPhase) -> str:
    # the cascade's PE class was learned from CTPA (the phantoms draw a clot only against contrast)
    return (f"non-contrast scan ({phase.reason}): the cascade learned PE from contrast-enhanced (CTPA) "
            "scans only and no non-contrast model was given (--nct-model); a clot is hard to see without contrast, "
            "so a negative result does not rule out PE")


def decide_pathway(requested: str, phase: ContrastPhase | None, has_nct_model: bool) -> PhaseDecision:
    """The pathway for ``requested`` (auto | ctpa | nct) given the measured ``phase`` (None: the
    series was refused before it could be measured) and whether an NCT model is given."""
    blood = None if phase is None else phase.blood_hu
    if requested == "ctpa":
        return PhaseDecision(requested, "ctpa", blood, "--phase ctpa: the CTPA cascade, as asked")
    if requested == "nct":
        if has_nct_model:
            return PhaseDecision(requested, "nct", blood, "--phase nct: the non-contrast model, as asked")
        why = "--phase nct without a non-contrast model (--nct-model): triaged with the CTPA cascade"
        return PhaseDecision(requested, "ctpa", blood, why, why)
    if phase is None:
        return PhaseDecision(requested, "ctpa", None, "contrast phase not measured (the series was not analysable)")
    if phase.phase == "contrast":
        return PhaseDecision(requested, "ctpa", blood, phase.reason)
    if phase.phase == "non_contrast":
        if has_nct_model:
            return PhaseDecision(requested, "nct", blood, f"{phase.reason}: the non-contrast model")
        return PhaseDecision(requested, "ctpa", blood, f"{phase.reason}; no non-contrast model given (--nct-model): "
                             "the CTPA cascade", _non_contrast_warning(phase))
    return PhaseDecision(requested, "ctpa", blood, f"contrast phase undecided ({phase.reason}): the CTPA cascade",
                         f"contrast phase undecided ({phase.reason}): triaged with the CTPA cascade")
