"""The one gate: can this series be triaged? Modality, orientation, slice count, gaps, enough lung.

Every front end (the cascade, ``petriage triage`` and ``info``, the Slicer module) asks here, with
the numbers of ``ingest.limits``; a series that fails gets ``not_analysable`` with the reason
and never a verdict.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from PETriageLib.ingest.limits import (MIN_LUNG_SLICE_FRACTION, MIN_SLICES, is_axial, modality_problem,
                                            spacing_gaps)
from PETriageLib.ingest.volume import CTVolume
from PETriageLib.preprocess.lungs import SliceLung


def series_problem(volume: CTVolume, min_slices: int = MIN_SLICES) -> str | None:
    """Why this series cannot be triaged whatever its content (not CT, damaged at ingest: lost
    slices, gantry tilt, implausible pixels; not axial, too few slices, slice positions not
    increasing, gaps), or None."""
    problem = modality_problem((volume.metadata or {}).get("modality"))
    if problem:
        return problem
    defects = list(getattr(volume, "defects", None) or [])
    if defects:
        more = f" (and {len(defects) - 1} more problem(s): {'; '.join(defects[1:3])})" if len(defects) > 1 else ""
        return defects[0] + more
    if not is_axial(np.asarray(volume.direction, float)[:, 2]):
        return "not an axial series (slice normal is not along the patient's head-feet axis)"
    if volume.num_slices < min_slices:
        return f"too few slices ({volume.num_slices} < {min_slices}) for a chest CT"
    z = np.asarray(volume.z_positions, float)
    if len(z) > 1 and float(np.median(np.diff(z))) <= 0:
        return "slice positions are not increasing"
    typical, gaps = spacing_gaps(z)
    if len(gaps):
        steps = np.diff(z)
        worst = int(gaps[np.argmax(steps[gaps])])
        return (f"gap in the series: {steps[worst]:.1f} mm between slices {worst} and {worst + 1} "
                f"(typical spacing {typical:.1f} mm)")
    return None


def chest_problem(volume: CTVolume, lungs: Sequence[SliceLung],
                  min_fraction: float = MIN_LUNG_SLICE_FRACTION) -> str | None:
    """Why this series is not a chest CT (no or too little lung), or None when it is."""
    n = len(lungs)
    n_lung = sum(1 for s in lungs if s.has_lung)
    part = (volume.metadata or {}).get("body_part") or "not given"
    if n == 0 or n_lung == 0:
        return f"no lung found on any of {n} slices (body part: {part}): not a chest CT"
    if n_lung / n < min_fraction:
        return (f"lung found on only {n_lung} of {n} slices ({100 * n_lung / n:.0f}% < {100 * min_fraction:.0f}%; "
                f"body part: {part}): not a chest CT")
    return None


def triage_problem(volume: CTVolume, lungs: Sequence[SliceLung], min_slices: int = MIN_SLICES) -> str | None:
    """The gate: the first reason this series cannot be triaged, or None."""
    return series_problem(volume, min_slices) or chest_problem(volume, lungs)
