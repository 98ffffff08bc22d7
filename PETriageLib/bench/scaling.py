"""How triage time grows with the number of slices: a least-squares line through (slices, s)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def fit_slope(slices: Sequence[float], seconds: Sequence[float]) -> dict[str, Any]:
    """Slope (s per slice), intercept (s), slices/s from the slope, and R^2 of the line fit."""
    x = np.asarray(slices, float)
    y = np.asarray(seconds, float)
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError(f"need at least two different series lengths to fit a slope, got {list(x)}")
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else 1.0
    return {"slope_s_per_slice": float(slope), "intercept_s": float(intercept),
            "slices_per_s": float(1.0 / slope) if slope > 0 else None, "r2": r2,
            "points": [[float(a), float(b)] for a, b in zip(x, y)]}
