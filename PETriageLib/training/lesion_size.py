"""What the cascade misses, by lesion size: per-slice lesion areas from the lesion masks, and
sensitivity per area bin (slices with a 2 mm^2 clot edge are not those with a saddle embolus).

``separation_by_area`` adds, per bin, how well the model's scores tell those slices from a
reference set (stage 1: the WNL slices), which shows which findings limit the whole curve, not
only the chosen threshold.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from PETriageLib.training.metrics import fmt_count

AREA_BINS_MM2 = (0.0, 20.0, 100.0, 500.0, math.inf)


def slice_lesion_areas(source) -> np.ndarray:
    """(slices, 2) lesion area in mm^2 on each slice: PE, other disease (``lesion_masks.CHANNELS``)."""
    from PETriageLib.preprocess.lungs import pixel_spacing_of
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


def _bins(area: np.ndarray, bins: Sequence[float]):
    """(bin name, selection) for each bin holding slices; slices with area 0 belong to none."""
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (area > lo) & (area < hi) if lo == 0 else (area >= lo) & (area < hi)
        if sel.any():
            yield _bin_name(lo, hi), sel


def sensitivity_by_area(area: np.ndarray, found: np.ndarray,
                        bins: Sequence[float] = AREA_BINS_MM2) -> list[tuple[str, str]]:
    """Rows (area bin, share of the slices in that bin that were found) for slices with area > 0."""
    area, found = np.asarray(area, float), np.asarray(found, bool)
    return [(name, fmt_count(int(found[sel].sum()), int(sel.sum()))) for name, sel in _bins(area, bins)]


def separation_by_area(group: str, area: np.ndarray, found: np.ndarray, scores: np.ndarray,
                       reference: np.ndarray, bins: Sequence[float] = AREA_BINS_MM2) -> list[dict]:
    """Per area bin of one group of slices: the share found and the AUROC against ``reference``.

    The AUROC is the chance that a slice of the bin scores above a reference slice (ties count
    half): 1.0 means some threshold finds the whole bin without a single reference slice. None
    when there are no reference slices.
    """
    from sklearn.metrics import roc_auc_score

    area, found = np.asarray(area, float), np.asarray(found, bool)
    scores, reference = np.asarray(scores, float), np.asarray(reference, float)
    rows = []
    for name, sel in _bins(area, bins):
        auroc = None
        if reference.size:
            y = np.r_[np.zeros(reference.size), np.ones(int(sel.sum()))]
            auroc = round(float(roc_auc_score(y, np.r_[reference, scores[sel]])), 4)
        rows.append({"group": group, "area": name, "found": fmt_count(int(found[sel].sum()), int(sel.sum())),
                     "auroc": auroc})
    return rows
