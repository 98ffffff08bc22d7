"""What a triage run is asked to do (models, device, Grad-CAM, display), free of Slicer imports, so the
triage child process (triage_child.py) builds exactly the cascade the panel would build in-process."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class DisplayOptions:
    """How heatmaps are shown: warm colour map, transparent below ``threshold``, at ``opacity``."""

    color: str = "PET-Heat"
    threshold: float = 0.2
    opacity: float = 0.5
    foreground_branch: Optional[str] = None  # None: the first branch


@dataclass
class TriageSettings:
    stage1: str
    stage2: str
    device: str = "auto"
    threshold_pe: Optional[float] = None  # None: the patient rule's (operating_point patient), else the checkpoint's
    patient_model: Optional[str] = None  # a patient classifier file (petriage train-patient); None: any-slice rule
    refiner: Optional[str] = None  # a slice refiner file (petriage train-refiner); None: the stages' own scores
    operating_point: str = "patient"  # patient: the pair's registered patient rule where it has one | slice
    domain_check: str = "refuse"  # refuse | warn | off: series unlike stage 1's training data (domain_check)
    phase: str = "auto"  # auto | ctpa | nct: the pathway, by the measured blood-pool HU unless forced
    seg_model: Optional[str] = None  # an embolus segmentation model for CTPA series; "default": the shipped one
    nct_model: Optional[str] = None  # the non-contrast (CPMN) model; "default": the shipped one; None: none
    cam: str = "top-k"  # top-k | pe | none
    top_k: int = 5
    display: DisplayOptions = field(default_factory=DisplayOptions)

    def cascade_key(self) -> tuple:
        """What the cascade depends on (the display and Grad-CAM choices do not rebuild it)."""
        return (self.stage1, self.stage2, self.device, self.threshold_pe, self.patient_model, self.refiner,
                self.operating_point, self.domain_check, self.phase, self.seg_model, self.nct_model)


def build_cascade_for(settings: TriageSettings) -> Any:
    """The PETriageLib Cascade for these settings (model names resolved through the module's model list)."""
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.triage.embolus import embolus_model_spec

    from PETriageSlicer.model_list import verified_path

    paths = [str(verified_path(name)) for name in (settings.stage1, settings.stage2)]
    return build_cascade(paths[0], paths[1], device=settings.device, threshold_pe=settings.threshold_pe,
                         patient_model=settings.patient_model or None, refiner=settings.refiner or None,
                         operating_point=settings.operating_point, domain_check=settings.domain_check, phase=settings.phase,
                         seg_model=embolus_model_spec(settings.seg_model or None, "ctpa"),
                         nct_model=embolus_model_spec(settings.nct_model or None, "nct"))


def output_folder(text: "str | None", what: str = "export folder") -> Path:
    """An absolute output folder chosen by the user; refuses empty, '.' and relative paths (a
    ctkDirectoryButton with no directory reads '.', Slicer's working directory)."""
    if not text or text.strip() in (".", "./"):
        raise ValueError(f"Choose an {what} first (none is set).")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise ValueError(f"The {what} {text!r} is relative (to Slicer's working directory): choose an absolute folder.")
    return path
