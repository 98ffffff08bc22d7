"""Pixel sanity after decoding: slices that break from their neighbours (what corrupt JPEG
Lossless decodes to, silently: garbage from the damaged byte on, often only in a band of rows).
and slices with too many values above what CT holds. ``implausible_pixels`` turns both into the
defects the gate refuses; ``ingest.load`` and the Slicer module (on a node's voxels) share it. The
numbers are in ``ingest.limits``."""
from __future__ import annotations

import numpy as np

from typing import Sequence

from PETriageLib.ingest.limits import (EDGE_JUMP_FACTOR, MAX_CT_HU, MAX_OUT_OF_RANGE_FRACTION, MIN_JUMP_HU,
                                     NEIGHBOUR_JUMP_FACTOR)

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


def above_ct_fraction(hu: np.ndarray) -> np.ndarray:
    """Per slice of a (k, j, i) HU array: the share of pixels above ``MAX_CT_HU``."""
    flat = hu.reshape(hu.shape[0], -1)
    return np.count_nonzero(flat > MAX_CT_HU, axis=1) / max(flat.shape[1], 1)


def _names(names: Sequence[str], picked: Sequence[int], shown: int = 3) -> str:
    text = ", ".join(names[k] for k in picked[:shown])
    return text + (f" and {len(picked) - shown} more" if len(picked) > shown else "")


def implausible_pixels(hu: np.ndarray, names: Sequence[str], above: "Sequence[float] | None" = None) -> list[str]:
    """Defects for slices whose pixels CT cannot hold, each naming the slices (``names[k]``).

    ``above``: per-slice share above ``MAX_CT_HU`` when the caller measured it before a cast that
    clips (``ingest.load`` does, on float64 HU); else it is measured on ``hu``."""
    shares = above_ct_fraction(hu) if above is None else np.asarray(above, float)
    flagged = [int(k) for k in np.flatnonzero(shares > MAX_OUT_OF_RANGE_FRACTION)]
    defects = []
    if flagged:
        listed = ", ".join(f"{names[k]} ({100 * shares[k]:.0f}%)" for k in flagged[:5])
        more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
        defects.append(f"implausible pixel values for CT in {len(flagged)} slice(s): {listed}{more} of the pixels "
                       f"are above {MAX_CT_HU} HU (corrupt pixel data or a wrong rescale?)")
    breaks = [k for k in neighbour_breaks(hu) if k not in set(flagged)]
    if breaks:
        defects.append(f"implausible pixel values for CT in {len(breaks)} slice(s) that break from both neighbours: "
                       f"{_names(names, breaks)} (corrupt compressed pixel data decodes to such slices)")
    return defects
