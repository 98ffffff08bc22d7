"""Pixel sanity after decoding: slices whose values CT cannot hold, or that break from their
neighbours (what corrupt JPEG Lossless decodes to, silently). The numbers are in ``ingest.limits``."""
from __future__ import annotations

import numpy as np

from PETriageLib.ingest.limits import MIN_JUMP_HU, NEIGHBOUR_JUMP_FACTOR

STRIDE = 4  # compare every 4th pixel: enough to see garbage, cheap on 512 x 512


def neighbour_breaks(hu: np.ndarray) -> list[int]:
    """Indices of slices far from both neighbours while the neighbours are close to each other
    (an edge slice: far from its neighbour while that one is close to the next)."""
    n = hu.shape[0]
    if n < 3:
        return []
    small = hu[:, ::STRIDE, ::STRIDE].astype(np.float32)
    step = np.abs(np.diff(small, axis=0)).mean(axis=(1, 2))  # step[k]: slice k to k + 1
    limit = max(NEIGHBOUR_JUMP_FACTOR * float(np.median(step)), MIN_JUMP_HU)
    out = []
    if step[0] > limit and step[1] < step[0] / NEIGHBOUR_JUMP_FACTOR:
        out.append(0)
    for k in range(1, n - 1):
        if step[k - 1] > limit and step[k] > limit:
            across = float(np.abs(small[k + 1] - small[k - 1]).mean())
            if across < min(step[k - 1], step[k]) / 3:
                out.append(k)
    if step[-1] > limit and step[-2] < step[-1] / NEIGHBOUR_JUMP_FACTOR:
        out.append(n - 1)
    return out
