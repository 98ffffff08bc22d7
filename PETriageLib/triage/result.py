"""What triaging one series gives: per-slice rows, the patient verdict, and how they were made."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from PETriageLib import __version__
from PETriageLib.ingest.volume import CTVolume
from PETriageLib.preprocess.contrast_phase import ContrastPhase
from PETriageLib.triage.domain import DomainCheck
from PETriageLib.triage.embolus import EmbolusResult
from PETriageLib.triage.options import CascadeOptions
from PETriageLib.triage.phase_route import PhaseDecision
from PETriageLib.triage.stages import ModelInfo
from PETriageLib.triage.verdict import PatientVerdict, SliceRow

SERIES_KEYS = ("patient_id", "patient_name", "study_uid", "series_uid", "study_date", "series_description",
               "study_description", "modality", "manufacturer", "kernel", "contrast_agent", "slice_thickness")


@dataclass(frozen=True)
class RunInfo:
    """How the cascade ran beyond its options: series model files, shared inputs, fast paths."""

    refiner: str | None = None
    patient_model: str | None = None
    shared_preprocessing: bool = False
    fast_paths: dict = field(default_factory=dict)


@dataclass
class TriageResult:
    rows: list[SliceRow]
    verdict: PatientVerdict
    volume: CTVolume
    models: list[ModelInfo]
    options: CascadeOptions
    run: RunInfo = field(default_factory=RunInfo)
    timings: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    lungs: list | None = None  # preprocess.lungs.SliceLung per slice (reused by Grad-CAM)
    domain: DomainCheck | None = None  # stage 1's domain check; None when not run
    contrast_phase: ContrastPhase | None = None  # measured on analysable series; None when not measured
    phase: PhaseDecision | None = None  # which pathway triaged it (CTPA cascade or NCT model) and why
    embolus: EmbolusResult | None = None  # the embolus segmentation; None when no segmentation model ran

    def model(self, stage: int) -> ModelInfo | None:
        return next((m for m in self.models if m.stage == stage), None)

    def options_dict(self) -> dict[str, Any]:
        """The options as report.json lists them."""
        run = self.run
        return {**self.options.to_dict(), "shared_preprocessing": run.shared_preprocessing,
                "patient_model": run.patient_model, "refiner": run.refiner, "fast_paths": dict(run.fast_paths)}

    def series_info(self) -> dict[str, Any]:
        v = self.volume
        md = dict(v.metadata or {})
        info = {k: md.get(k) for k in SERIES_KEYS}
        info.update(shape=list(v.shape), spacing=list(map(float, v.spacing)), origin=list(map(float, v.origin)),
                    direction=np.asarray(v.direction, float).tolist(), warnings=list(v.warnings))
        return {k: (str(x) if x is not None and not isinstance(x, (int, float, str, list, bool)) else x)
                for k, x in info.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "petriage_version": __version__,
            "series": self.series_info(),
            "patient": self.verdict.to_dict(),
            "models": [m.to_dict() for m in self.models],
            "options": self.options_dict(),
            "device": self.device,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "warnings": self.warnings,
            "domain_check": None if self.domain is None else self.domain.to_dict(),
            "contrast_phase": None if self.contrast_phase is None else asdict(self.contrast_phase),
            "phase": None if self.phase is None else self.phase.to_dict(),
            "embolus": None if self.embolus is None else self.embolus.to_dict(),
            "slices": [r.to_dict() for r in self.rows],
        }
