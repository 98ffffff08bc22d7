"""Contrast phase of a chest CT from its blood pool: CTPA (iodine in the pulmonary arteries) or a
scan without contrast. The CTPA cascade is trained on contrast; a non-contrast scan needs to be
known as such (issue #24), and a scan whose phase cannot be told must say so.

The blood pool is measured where a chest CT always has it: the mediastinum between the two lungs
(heart, pulmonary trunk, aorta) on the middle slices of the lung range. Bone (spine, sternum,
calcified plaque) is removed by its HU and a margin, the lung edge by a margin (partial volume).
The 80th percentile of what remains is blood in a contrast scan (fat and muscle lie below it) and
plain soft tissue without contrast. Real scans measured here: non-contrast 52-79 HU
(cap002, Lung-PET-CT-Dx), contrast 223 HU (the LIDC slice at heart level).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.preprocess.lungs import SliceLung, analyse_lungs, pixel_spacing_of

SOFT_TISSUE_HU = (-30.0, 800.0)  # fat's upper tail to dense contrast; lung and air below, bone above
BONE_HU = 450.0  # cortical bone and calcium (enhanced blood rarely passes 450 at the mediastinum's 80th pct)
BONE_MARGIN_MM = 3.0
LUNG_EDGE_MM = 3.0
BLOOD_PERCENTILE = 80.0
NON_CONTRAST_BELOW_HU = 110.0  # unenhanced blood is 30-60 HU; muscle 40-60
CONTRAST_ABOVE_HU = 160.0  # CTPA targets >= 250 HU in the pulmonary trunk
MIN_AREA_MM2 = 1500.0  # less mediastinum than this (a few slices, a thin slab): no decision
MAX_SLICES = 12
MIDDLE_SHARE = 0.6  # the middle 60% of the lung range: heart and great vessels, not apex or bases


@dataclass(frozen=True)
class ContrastPhase:
    """``phase``: "contrast", "non_contrast" or "undecided"; ``blood_hu`` the measured blood pool
    (None when nothing could be measured); ``reason`` says why, in words a report can show."""

    phase: str
    blood_hu: float | None
    area_mm2: float
    slices: list[int]
    reason: str


def _between_lungs(lung: np.ndarray) -> np.ndarray:
    """Pixels with lung both to their left and to their right in the same row."""
    from_left = np.maximum.accumulate(lung, axis=1)
    from_right = np.maximum.accumulate(lung[:, ::-1], axis=1)[:, ::-1]
    return from_left & from_right & ~lung


def _disk(radius_px: int) -> np.ndarray:
    r = max(int(radius_px), 1)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return yy * yy + xx * xx <= r * r


def mediastinum_values(hu_slice: np.ndarray, lung: np.ndarray, pixel_mm: float) -> np.ndarray:
    """HU of the soft tissue between the lungs of one slice, bone and the lung edge left out."""
    bone = ndimage.binary_fill_holes(hu_slice > BONE_HU)
    bone = ndimage.binary_dilation(bone, _disk(round(BONE_MARGIN_MM / pixel_mm)))
    lung_edge = ndimage.binary_dilation(lung, _disk(round(LUNG_EDGE_MM / pixel_mm)))
    region = _between_lungs(lung) & ~bone & ~lung_edge
    values = hu_slice[region].astype(np.float32)
    return values[(values >= SOFT_TISSUE_HU[0]) & (values <= SOFT_TISSUE_HU[1])]


def middle_lung_slices(lungs: Sequence[SliceLung], share: float = MIDDLE_SHARE,
                       most: int = MAX_SLICES) -> list[int]:
    """Up to ``most`` evenly spread slices of the middle ``share`` of the lung range."""
    with_lung = [k for k, s in enumerate(lungs) if s.has_lung]
    if not with_lung:
        return []
    first, last = with_lung[0], with_lung[-1]
    margin = (last - first) * (1.0 - share) / 2.0
    lo, hi = int(np.ceil(first + margin)), int(np.floor(last - margin))
    if hi < lo:  # a short lung range: its middle slice
        lo = hi = (first + last) // 2
    picked = np.unique(np.linspace(lo, hi, min(most, hi - lo + 1)).round().astype(int))
    return [int(k) for k in picked if lungs[k].has_lung]


def decide(blood_hu: float | None, area_mm2: float) -> tuple[str, str]:
    if blood_hu is None or area_mm2 < MIN_AREA_MM2:
        return "undecided", (f"too little mediastinum between the lungs to measure the blood pool "
                             f"({area_mm2:.0f} mm^2 < {MIN_AREA_MM2:.0f} mm^2)")
    if blood_hu < NON_CONTRAST_BELOW_HU:
        return "non_contrast", f"blood pool {blood_hu:.0f} HU (< {NON_CONTRAST_BELOW_HU:.0f} HU): no contrast"
    if blood_hu > CONTRAST_ABOVE_HU:
        return "contrast", f"blood pool {blood_hu:.0f} HU (> {CONTRAST_ABOVE_HU:.0f} HU): contrast-enhanced"
    return "undecided", (f"blood pool {blood_hu:.0f} HU, between {NON_CONTRAST_BELOW_HU:.0f} and "
                         f"{CONTRAST_ABOVE_HU:.0f} HU: poor or late enhancement, phase cannot be told")


def measure_contrast_phase(volume: CTVolume, lungs: Sequence[SliceLung] | None = None) -> ContrastPhase:
    """The contrast phase of ``volume`` (``lungs``: its ``analyse_lungs``, computed when not given)."""
    lungs = analyse_lungs(volume) if lungs is None else lungs
    row_mm, col_mm = pixel_spacing_of(volume)
    pixel_mm, pixel_area = float(np.sqrt(row_mm * col_mm)), row_mm * col_mm
    shape = volume.hu.shape[1:]
    slices = middle_lung_slices(lungs)
    parts = [mediastinum_values(np.asarray(volume.hu[k]), lungs[k].full_mask(shape), pixel_mm) for k in slices]
    values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    area = float(values.size * pixel_area)
    blood = float(np.percentile(values, BLOOD_PERCENTILE)) if values.size else None
    phase, reason = decide(blood, area)
    return ContrastPhase(phase, None if blood is None else round(blood, 1), round(area, 1), slices, reason)
