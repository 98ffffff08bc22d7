"""How a cascade decides: operating points, the verdict rule, which slices stage 2 sees, batch
size, inference path and domain check. One typed object, carried into every result."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from PETriageLib.ingest.limits import MIN_SLICES
from PETriageLib.vocabulary import DOMAIN_CHECK_MODES, INFERENCE_PATHS


@dataclass(frozen=True)
class CascadeOptions:
    # Operating points; None: the refiner's when there is one, else each checkpoint's own
    # (``Cascade`` fills them in, so a cascade's options always hold numbers).
    threshold_disease: float | None = None  # stage 1
    threshold_pe: float | None = None  # stage 2
    min_run: int = 1  # consecutive positive slices for a positive patient (1: any slice)
    min_slices: int = MIN_SLICES
    all_slices: bool = False  # stage 2 on every lung slice, not only the diseased ones
    batch_size: int = 32
    inference: str = "fast"  # models.fast.FastPredictor, validated against fp32; or eager fp32
    # refuse: a series unlike stage 1's training data is not analysable; warn: only say so
    domain_check: str = "refuse"

    def __post_init__(self) -> None:
        for name, kind in (("batch_size", int), ("min_run", int), ("min_slices", int), ("all_slices", bool),
                           ("threshold_disease", float), ("threshold_pe", float)):
            value = getattr(self, name)
            if value is not None:  # frozen: set through object.__setattr__, once, here
                object.__setattr__(self, name, kind(value))
        if self.inference not in INFERENCE_PATHS:
            raise ValueError(f"unknown inference path {self.inference!r}; use one of {', '.join(INFERENCE_PATHS)}")
        if self.domain_check not in DOMAIN_CHECK_MODES:
            raise ValueError(f"unknown domain check {self.domain_check!r}; use one of {', '.join(DOMAIN_CHECK_MODES)}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.min_run < 1:
            raise ValueError(f"min_run must be >= 1, got {self.min_run}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
