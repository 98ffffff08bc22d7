"""How a cascade decides: operating points, the verdict rule, which slices stage 2 sees, batch
size, inference path and domain check. One typed object, carried into every result."""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

from PETriageLib.ingest.limits import MIN_SLICES
from PETriageLib.vocabulary import (DOMAIN_CHECK_MODES, ENGINE_ALIASES, ENGINE_CHOICES, INFERENCE_PATHS,
                                    OPERATING_POINTS, PHASE_CHOICES, is_probability)

ROUTING_FIELDS = ("phase", "seg_model", "nct_model")


@dataclass(frozen=True)
class CascadeOptions:
    # Operating points; None: the refiner's when there is one, else the pair's patient rule
    # (operating_point "patient", when one is registered), else each checkpoint's own with min_run 1
    # (``Cascade`` fills them in, so a cascade's options always hold numbers).
    threshold_disease: float | None = None  # stage 1
    threshold_pe: float | None = None  # stage 2
    min_run: int | None = None  # consecutive positive slices for a positive patient (1: any slice)
    operating_point: str = "patient"
    patient_rule: str | None = None  # the registered rule's name, filled in by ``Cascade`` when it applies
    min_slices: int = MIN_SLICES
    all_slices: bool = False  # stage 2 on every lung slice, not only the diseased ones
    batch_size: int = 16  # 32 measured about 250 MB more peak memory (activations) for a few % of speed
    inference: str = "fast"  # models.fast.FastPredictor, validated against fp32; or eager fp32
    # refuse: a series unlike stage 1's training data is not analysable; warn: only say so
    domain_check: str = "refuse"
    # the fast path's engine: auto picks torch where the CPU has bf16 (or on a GPU), else ONNX Runtime
    # when installed (triage.stage_runner.choose_engine); both are checked against fp32
    engine: str = "auto"
    # contrast-phase routing (issue #24): auto measures the blood pool; ctpa / nct force a pathway.
    # seg_model segments emboli on CTPA series, nct_model (cross_phase) triages non-contrast ones;
    # both a checkpoint file or a registered name. Reported under report.json's "phase"/"embolus".
    phase: str = "auto"
    seg_model: str | None = None
    nct_model: str | None = None

    def __post_init__(self) -> None:
        # Checked and normalised at the boundary (frozen: set through object.__setattr__, once, here):
        # an operating point is None or a finite number in [0, 1]; a count is a whole number >= 1
        # (8.0 is 8; "8", 8.5 and True are refused).
        for name in ("threshold_disease", "threshold_pe"):
            value = getattr(self, name)
            if value is not None:
                if not is_probability(value):
                    raise ValueError(f"{name} must be a finite number in [0, 1], got {value!r}")
                object.__setattr__(self, name, float(value))
        for name in ("batch_size", "min_run", "min_slices"):
            value = getattr(self, name)
            if value is None and name == "min_run":
                continue
            whole = isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()
            if not whole or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "all_slices", bool(self.all_slices))
        if self.inference not in INFERENCE_PATHS:
            raise ValueError(f"unknown inference path {self.inference!r}; use one of {', '.join(INFERENCE_PATHS)}")
        object.__setattr__(self, "engine", ENGINE_ALIASES.get(self.engine, self.engine))
        if self.engine not in ENGINE_CHOICES:
            raise ValueError(f"unknown engine {self.engine!r}; use one of {', '.join(ENGINE_CHOICES)}")
        if self.domain_check not in DOMAIN_CHECK_MODES:
            raise ValueError(f"unknown domain check {self.domain_check!r}; use one of {', '.join(DOMAIN_CHECK_MODES)}")
        if self.operating_point not in OPERATING_POINTS:
            raise ValueError(f"unknown operating point {self.operating_point!r}; use one of {', '.join(OPERATING_POINTS)}")
        if self.phase not in PHASE_CHOICES:
            raise ValueError(f"unknown phase {self.phase!r}; use one of {', '.join(PHASE_CHOICES)}")
        for name in ("seg_model", "nct_model"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value))

    def to_dict(self) -> dict[str, Any]:
        """The cascade's options; the routing fields are left out (report.json says them under
        "phase" and "embolus", and a report without segmentation stays as it was)."""
        d = asdict(self)
        for name in ROUTING_FIELDS:
            d.pop(name)
        return d
