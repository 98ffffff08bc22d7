"""The numbers that decide whether a series can be triaged, and the tests of them that need only
headers and geometry. Ingest warns with them; ``triage.eligibility`` refuses with them, so a
series warned about here ("missing slices", "not axial", "not CT") is the series triage refuses.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

AXIAL_COSINE = 0.985  # |slice normal . S-I axis| above this (about 10 degrees) counts as axial
GAP_FACTOR = 1.5  # a step larger than this times the median spacing means missing slices
DUPLICATE_MM = 0.01  # positions closer than this are the same slice position
MIN_SLICES = 10  # fewer slices than this cannot be a chest CT
MIN_LUNG_SLICE_FRACTION = 0.15  # fewer slices with lung than this share: not a chest CT


def modality_problem(modality: "str | None") -> str | None:
    """Why a series of this Modality is not triaged, or None. A missing Modality is left to the
    SOP-class check of ``ingest.checks`` (CT Image Storage without the tag still loads)."""
    if modality and str(modality).strip().upper() != "CT":
        return f"not a CT series (modality {modality})"
    return None


def is_axial(normal: Sequence[float]) -> bool:
    """True when the slice normal (LPS) lies within ~10 degrees of the patient's head-feet axis."""
    return bool(abs(float(np.asarray(normal, float)[2])) > AXIAL_COSINE)


def spacing_gaps(positions: Sequence[float]) -> "tuple[float, np.ndarray]":
    """(median spacing, indices k where the step from slice k to k + 1 is a gap) of positions in
    ascending order; duplicate positions do not count as steps. (0, []) for fewer than two slices."""
    steps = np.diff(np.asarray(positions, float))
    real = steps[steps >= DUPLICATE_MM]
    if not real.size:
        return 0.0, np.zeros(0, int)
    median = float(np.median(real))
    return median, np.flatnonzero(steps > GAP_FACTOR * median)


# Header values outside these are refused (ingest.header) before any pixel is decoded.
MAX_IMAGE_SIDE = 4096  # Rows, Columns: CT is 512, sometimes 1024 or 2048
BITS_ALLOCATED = (8, 16, 32)
MAX_VOXELS = 1_500_000_000  # slices x rows x columns of one series (6 GB as float32)
MAX_RESCALE_SLOPE = 1000.0  # 0 < RescaleSlope <= this
MAX_ABS_INTERCEPT = 100_000.0  # |RescaleIntercept| <= this
MAX_PIXEL_MM = 50.0  # 0 < PixelSpacing <= this
ORIENTATION_TOLERANCE = 1e-3  # |1 - |row||, |1 - |col|| and |row . col| above this: not a valid orientation
MAX_TILT_DEGREES = 0.5  # slice positions off the slice normal by more than this: gantry tilt (sheared volume)

# Pixel sanity after decoding: CT holds -1024..3071 HU (12 bits); metal can exceed it on a few pixels.
MAX_CT_HU = 3071
MAX_OUT_OF_RANGE_FRACTION = 0.05  # a slice with more of its pixels above MAX_CT_HU is implausible for CT
# A slice that breaks from its neighbours: mean |HU difference| to each of them above this factor
# times the series' median step difference (and above MIN_JUMP_HU), while the neighbours agree with
# each other. Corrupt JPEG Lossless decodes to such slices without any decoder error.
NEIGHBOUR_JUMP_FACTOR = 3.0
MIN_JUMP_HU = 30.0
EDGE_JUMP_FACTOR = 10.0  # the first or last slice (one neighbour): only an extreme jump counts
