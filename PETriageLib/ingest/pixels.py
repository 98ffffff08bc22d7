"""Pixel sanity after decoding: slices that break from their neighbours (what corrupt JPEG
Lossless decodes to, silently: garbage from the damaged byte on, often only in a band of rows).
The out-of-range test lives with the rescale in ``ingest.load``; the numbers are in ``ingest.limits``."""
from __future__ import annotations

import numpy as np

from PETriageLib.ingest.limits import MIN_JUMP_HU, NEIGHBOUR_JUMP_FACTOR

STRIDE = 4  # compare every 4th pixel: enough to see garbage, cheap on 512 x 512
BANDS = 8  # damage often starts at some row: compare bands of rows, not only whole slices


def _band_means(diff: np.ndarray) -> np.ndarray:
    """(..., rows, cols) absolute differences -> (..., BANDS) mean per band of rows."""
    bands = np.array_split(np.abs(diff), min(BANDS, diff.shape[-2]), axis=-2)
    return np.stack([b.mean(axis=(-2, -1)) for b in bands], axis=-1)


def neighbour_breaks(hu: np.ndarray) -> list[int]:
    """Indices of slices with a band of rows far from both neighbours while the neighbours are
    close to each other there (an edge slice: far from its neighbour, which is close to the next)."""
    n = hu.shape[0]
    if n < 3:
        return []
    small = hu[:, ::STRIDE, ::STRIDE].astype(np.float32)
    step = _band_means(np.diff(small, axis=0))  # (n - 1, bands): slice k to k + 1
    across = _band_means(small[2:] - small[:-2])  # (n - 2, bands): slice k - 1 to k + 1
    limit = np.maximum(NEIGHBOUR_JUMP_FACTOR * np.median(step, axis=0), MIN_JUMP_HU)  # per band
    far = step > limit
    out = []
    if np.any(far[0] & (step[1] < step[0] / NEIGHBOUR_JUMP_FACTOR)):
        out.append(0)
    for k in range(1, n - 1):
        both = far[k - 1] & far[k] & (across[k - 1] < np.minimum(step[k - 1], step[k]) / 3)
        if both.any():
            out.append(k)
    if np.any(far[-1] & (step[-2] < step[-1] / NEIGHBOUR_JUMP_FACTOR)):
        out.append(n - 1)
    return out
