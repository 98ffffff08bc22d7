"""Pixel sanity after decoding: slices that break from their neighbours (what corrupt JPEG
Lossless decodes to, silently: garbage from the damaged byte on, often only in a band of rows).
The out-of-range test lives with the rescale in ``ingest.load``; the numbers are in ``ingest.limits``."""
from __future__ import annotations

import numpy as np

from PETriageLib.ingest.limits import EDGE_JUMP_FACTOR, MIN_JUMP_HU, NEIGHBOUR_JUMP_FACTOR

STRIDE = 4  # compare every 4th pixel: enough to see garbage, cheap on 512 x 512
BANDS = 8  # damage often starts at some row: compare bands of rows, not only whole slices


def _band_means(diff: np.ndarray) -> np.ndarray:
    """(..., rows, cols) absolute differences -> (..., BANDS) mean per band of rows."""
    bands = np.array_split(np.abs(diff), min(BANDS, diff.shape[-2]), axis=-2)
    return np.stack([b.mean(axis=(-2, -1)) for b in bands], axis=-1)


def neighbour_breaks(hu: np.ndarray) -> list[int]:
    """Indices of slices with a band of rows far from both neighbours while the neighbours are
    close to each other there; the first or last slice when it is extremely far from its one
    neighbour, which is close to the next."""
    n = hu.shape[0]
    if n < 3:
        return []
    small = hu[:, ::STRIDE, ::STRIDE].astype(np.float32)
    step = _band_means(np.diff(small, axis=0))  # (n - 1, bands): slice k to k + 1
    across = _band_means(small[2:] - small[:-2])  # (n - 2, bands): slice k - 1 to k + 1
    limit = np.maximum(NEIGHBOUR_JUMP_FACTOR * np.median(step, axis=0), MIN_JUMP_HU)  # per band
    far = step > limit
    out = [k for k in range(1, n - 1)
           if np.any(far[k - 1] & far[k] & (across[k - 1] < np.minimum(step[k - 1], step[k]) / 3))]
    # the first and last slice have one neighbour: a one-sided change is anatomy unless it is extreme
    # (phantoms reach 3.4 x the median step there, corrupt JPEG 30 to 300 x)
    edge = np.maximum(EDGE_JUMP_FACTOR * np.median(step, axis=0), MIN_JUMP_HU)
    if np.any(step[0] > edge) and not np.any(far[1]):
        out.insert(0, 0)
    if np.any(step[-1] > edge) and not np.any(far[-2]):
        out.append(n - 1)
    return out
