"""HU per tissue, found the same way on phantoms and on real CT so that the numbers compare.

The real series have no tissue labels, so every series (phantom or real) gets the same simple
segmentation: the preprocessing's body and lung masks, then HU ranges inside the body. The ranges
apply to the HU smoothed over 5 x 5 pixels, so a voxel's own noise does not decide its tissue (a
sharp kernel's noise would otherwise push voxels out of the range); the statistics are of the
voxels' own HU, noise included.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.preprocess.lungs import full_resolution, lung_masks, pixel_spacing_of

# HU ranges inside the body, outside the lungs (non-contrast tissues)
SOFT_RANGES = {"fat": (-200.0, -40.0), "soft_tissue": (0.0, 100.0), "bone": (300.0, 3000.0)}
TISSUES = ("air", "lung", "fat", "soft_tissue", "bone")
LUNG_MAX_HU = -500.0
AIR_MAX_HU = -900.0  # lung parenchyma only, not its vessels
SMOOTH_PX = 5
MAX_VOXELS = 200_000  # a random sample per tissue and series keeps the statistics cheap


@dataclass(frozen=True)
class HUStats:
    """One tissue of one series: how many voxels, their mean, spread and percentiles."""

    voxels: int
    mean: float
    sd: float
    p5: float
    p50: float
    p95: float

    @classmethod
    def of(cls, values: np.ndarray) -> "HUStats | None":
        if values.size < 100:
            return None
        v = values.astype(np.float64)
        p5, p50, p95 = np.percentile(v, [5, 50, 95])
        return cls(int(v.size), float(v.mean()), float(v.std()), float(p5), float(p50), float(p95))


def body_and_lung_masks(volume: CTVolume, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Body and lung masks (k, j, i) on the volume's grid, from the preprocessing's own finder."""
    spacing = pixel_spacing_of(volume)
    shape = volume.hu.shape[1:]
    bodies, lungs = [], []
    for start in range(0, volume.num_slices, chunk):
        body, lung, factor = lung_masks(volume.hu[start:start + chunk], spacing)
        bodies.append(full_resolution(body, factor, shape))
        lungs.append(full_resolution(lung, factor, shape))
    return np.concatenate(bodies), np.concatenate(lungs)


def in_plane() -> np.ndarray:
    """A 3D structuring element that only connects within a slice (slices may be 5 mm apart)."""
    s = np.zeros((3, 3, 3), bool)
    s[1] = ndimage.generate_binary_structure(2, 1)
    return s


def tissue_masks(volume: CTVolume) -> dict[str, np.ndarray]:
    """{tissue: bool (k, j, i)}: air outside the body (inside the field of view, below -900 HU), lung parenchyma,
    and fat, soft tissue and bone by HU inside the body away from the lungs."""
    hu = volume.hu
    body, lung = body_and_lung_masks(volume)
    plane = in_plane()
    inner_body = ndimage.binary_erosion(body, plane, iterations=3)
    outside = ~ndimage.binary_dilation(body, plane, iterations=5)
    n, rows, cols = hu.shape
    yy, xx = np.ogrid[:rows, :cols]
    fov = (yy - rows / 2) ** 2 + (xx - cols / 2) ** 2 < (0.45 * min(rows, cols)) ** 2  # padding lies outside
    smooth = ndimage.uniform_filter(hu.astype(np.float32), size=(1, SMOOTH_PX, SMOOTH_PX))
    masks = {"air": outside & fov[None] & (smooth < AIR_MAX_HU),  # not the table, clothes or blankets
             "lung": ndimage.binary_erosion(lung, plane, iterations=2) & (smooth < LUNG_MAX_HU)}
    away_from_lung = inner_body & ~ndimage.binary_dilation(lung, plane, iterations=3)
    for name, (low, high) in SOFT_RANGES.items():
        masks[name] = away_from_lung & (smooth >= low) & (smooth <= high)
    return masks


def sample(values: np.ndarray, rng: np.random.Generator, limit: int = MAX_VOXELS) -> np.ndarray:
    return values if values.size <= limit else rng.choice(values, limit, replace=False)


def tissue_stats(volume: CTVolume, seed: int = 0, masks: "dict[str, np.ndarray] | None" = None
                 ) -> dict[str, "HUStats | None"]:
    """HU statistics of every tissue of ``TISSUES`` in one series (None where too few voxels);
    ``masks``: ``tissue_masks(volume)`` when already made."""
    rng = np.random.default_rng(seed)
    masks = masks if masks is not None else tissue_masks(volume)
    return {name: HUStats.of(sample(volume.hu[masks[name]], rng)) for name in TISSUES}


def masked_stats(hu: np.ndarray, mask: np.ndarray, erode: int = 1, seed: int = 0) -> "HUStats | None":
    """HU statistics inside a labelled structure (an artery mask), eroded to leave out its wall's
    partial volume."""
    core = ndimage.binary_erosion(mask.astype(bool), in_plane(), iterations=erode) if erode else mask.astype(bool)
    return HUStats.of(sample(hu[core], np.random.default_rng(seed)))
