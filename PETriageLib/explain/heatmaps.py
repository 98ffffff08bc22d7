"""Grad-CAM of a triaged series: one heatmap volume per window branch of the chosen stage, in the
series geometry, with what the report says about them."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from PETriageLib.explain.gradcam import heatmap_volume
from PETriageLib.progress import Progress
from PETriageLib.triage.cascade import Cascade
from PETriageLib.triage.result import TriageResult


@dataclass
class Heatmaps:
    """Heatmap volumes {branch: float32 (k, j, i) in [0, 1]} of ``stage``'s positive class."""

    volumes: dict[str, np.ndarray]
    stage: int
    model: str
    target: str  # the class the maps explain
    slices: list[int]
    windows: list = field(default_factory=list)  # the stage's windows (for key images)
    seconds: float = 0.0

    def info(self) -> dict[str, Any]:
        """The report's ``gradcam`` entry."""
        return {"stage": self.stage, "model": self.model, "target": self.target, "slices": list(self.slices),
                "branches": list(self.volumes)}


def compute_heatmaps(cascade: Cascade, result: TriageResult, slices: Sequence[int], stage: int = 2,
                     batch_size: int = 4, progress: Progress | None = None, cancel: Any = None) -> Heatmaps:
    """Grad-CAM volumes (one per branch) of ``stage``'s positive class on the chosen slices."""
    st, cfg = cascade.stage(stage), cascade.config(stage)
    if progress is not None and slices:
        progress(0, len(slices), "Grad-CAM")
    t = time.perf_counter()
    vols = heatmap_volume(st.model, result.volume, list(slices), cfg, lungs=result.lungs,
                          batch_size=batch_size, progress=progress, cancel=cancel)
    return Heatmaps(vols, stage=stage, model=st.name, target=st.meta.get("class_names", ["", "positive"])[-1],
                    slices=[int(k) for k in slices], windows=list(st.meta.get("windows") or []),
                    seconds=time.perf_counter() - t)
