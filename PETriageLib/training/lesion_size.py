"""What the cascade misses, by lesion size: per-slice lesion areas from the lesion masks, and
sensitivity per area bin (slices with a 2 mm^2 clot edge are not those with a saddle embolus)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from PETriageLib.training.metrics import fmt_count

AREA_BINS_MM2 = (0.0, 20.0, 100.0, 500.0, math.inf)


def slice_lesion_areas(source) -> np.ndarray:
    """(slices, 2) lesion area in mm^2 on each slice: PE, other disease (``lesion_masks.CHANNELS``)."""
    from PETriageLib.lung_crop import pixel_spacing_of
    from PETriageLib.training.lesion_masks import PE_CODE, read_lesion_mask
    from PETriageLib.training.loaders import load_source

    volume, _ = load_source(source)
    mask = read_lesion_mask(source.mask, volume)
    pixel_mm2 = float(np.prod(pixel_spacing_of(volume)))
    pe = (mask == PE_CODE).sum(axis=(1, 2))
    other = ((mask != 0) & (mask != PE_CODE)).sum(axis=(1, 2))
    return np.stack([pe, other], axis=1).astype(np.float64) * pixel_mm2


def _bin_name(lo: float, hi: float) -> str:
    return f">= {lo:g} mm^2" if math.isinf(hi) else f"{lo:g}-{hi:g} mm^2"


def sensitivity_by_area(area: np.ndarray, found: np.ndarray,
                        bins: Sequence[float] = AREA_BINS_MM2) -> list[tuple[str, str]]:
    """Rows (area bin, share of the slices in that bin that were found) for slices with area > 0."""
    area, found = np.asarray(area, float), np.asarray(found, bool)
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (area > lo) & (area < hi) if lo == 0 else (area >= lo) & (area < hi)
        if sel.any():
            rows.append((_bin_name(lo, hi), fmt_count(int(found[sel].sum()), int(sel.sum()))))
    return rows
