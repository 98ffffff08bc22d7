"""Noise power spectrum (NPS) of a series, from square regions of uniform soft tissue.

Each region has its mean plane removed (what is left is noise plus fine texture), then
NPS(f) = |FFT(roi)|^2 * dx * dy / (nx * ny), averaged over the regions and over rings of equal
radial frequency. Frequencies are in cycles per mm, so series of other pixel sizes compare.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.preprocess.lungs import pixel_spacing_of
from .tissue import tissue_masks

ROI = 32  # pixels a side
MAX_ROIS = 60
BINS = 16


@dataclass(frozen=True)
class NoiseSpectrum:
    """Radially averaged NPS of one series and what sums it up."""

    rois: int
    noise_sd: float  # HU: the mean standard deviation of the detrended regions
    mean_frequency: float  # cycles/mm, NPS-weighted: higher for sharper kernels
    peak_frequency: float  # cycles/mm
    frequencies: list[float]  # ring centres, cycles/mm
    nps: list[float]  # HU^2 mm^2


def detrend(roi: np.ndarray) -> np.ndarray:
    """The region less its least-squares plane."""
    n, m = roi.shape
    yy, xx = np.mgrid[:n, :m]
    a = np.column_stack([np.ones(roi.size), yy.ravel(), xx.ravel()])
    coef, *_ = np.linalg.lstsq(a, roi.ravel().astype(np.float64), rcond=None)
    return roi - (a @ coef).reshape(n, m)


def uniform_roi_corners(mask: np.ndarray, rng: np.random.Generator, limit: int = MAX_ROIS) -> list[tuple[int, int, int]]:
    """(k, j, i) corners of ROI x ROI squares that lie wholly inside ``mask`` (k, j, i), spread at random."""
    square = np.ones((1, 3, 3), bool)  # in-plane, 8-connected: erosion by n keeps centres of (2n + 1)-squares
    inside = ndimage.binary_erosion(mask, square, iterations=ROI // 2)
    k, j, i = np.nonzero(inside)
    if not k.size:
        return []
    picks = rng.choice(k.size, min(limit * 20, k.size), replace=False)
    corners, taken = [], set()
    for p in picks:
        key = (int(k[p]), int(j[p]) // ROI, int(i[p]) // ROI)  # one square per cell: no two overlap much
        if key in taken:
            continue
        taken.add(key)
        corners.append((int(k[p]), int(j[p]) - ROI // 2, int(i[p]) - ROI // 2))
        if len(corners) == limit:
            break
    return corners


def noise_spectrum(volume: CTVolume, seed: int = 0, masks: "dict | None" = None) -> "NoiseSpectrum | None":
    """The NPS of ``volume`` in uniform soft tissue; None when no region fits."""
    masks = masks if masks is not None else tissue_masks(volume)
    # uniform: wholly inside soft tissue (0-100 HU), so no fat, air or bone edge crosses a region
    corners = uniform_roi_corners(masks["soft_tissue"], np.random.default_rng(seed))
    if not corners:
        return None
    dy, dx = pixel_spacing_of(volume)
    power = np.zeros((ROI, ROI))
    sds = []
    for k, j, i in corners:
        roi = detrend(volume.hu[k, j:j + ROI, i:i + ROI].astype(np.float64))
        sds.append(float(roi.std()))
        power += np.abs(np.fft.fft2(roi)) ** 2
    power *= dx * dy / (ROI * ROI) / len(corners)
    fy = np.fft.fftfreq(ROI, d=dy)
    fx = np.fft.fftfreq(ROI, d=dx)
    radius = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    nyquist = 0.5 / max(dx, dy)
    edges = np.linspace(0.0, nyquist, BINS + 1)
    ring = np.digitize(radius, edges) - 1
    centres, values = [], []
    for b in range(BINS):
        sel = ring == b
        if sel.any():
            centres.append(float((edges[b] + edges[b + 1]) / 2))
            values.append(float(power[sel].mean()))
    f, v = np.asarray(centres), np.asarray(values)
    mean_f = float((f * v).sum() / v.sum()) if v.sum() > 0 else 0.0
    return NoiseSpectrum(len(corners), float(np.mean(sds)), mean_f, float(f[int(np.argmax(v))]),
                         [round(x, 4) for x in centres], [round(x, 3) for x in values])
