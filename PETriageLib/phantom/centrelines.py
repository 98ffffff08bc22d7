"""Lumen radius, centre points and local centre lines of a real artery mask.

The radius is the in-plane distance to the wall (a 2-D distance transform per slice: at a
cross-section's centre this is the lumen radius whatever the vessel's slope, and far cheaper
than a 3-D one on 512 x 512 x 300). Centre points are its in-plane ridge. A clot's course is
the skeleton (skimage) of the artery inside a small box around its seed, walked along the
skeleton graph for the clot's length.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from skimage.morphology import skeletonize

# lumen radius (mm) of each PE level: main and trunk 6+, lobar 3.5-6, segmental 2-3.5, subsegmental 1-2
LEVEL_RADII = {"main": (6.0, 99.0), "lobar": (3.5, 6.0), "segmental": (2.0, 3.5), "subsegmental": (1.0, 2.0)}
LEVELS = tuple(LEVEL_RADII)


def level_of(radius_mm: float) -> "str | None":
    for name, (lo, hi) in LEVEL_RADII.items():
        if lo <= radius_mm < hi:
            return name
    return None


def lumen_radius(artery: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """float32 (k, j, i): in-plane distance (mm) from each artery voxel to the nearest non-artery."""
    out = np.zeros(artery.shape, np.float32)
    sx, sy = spacing[0], spacing[1]
    for k in np.flatnonzero(artery.any(axis=(1, 2))):
        sl = artery[k]
        rows, cols = np.flatnonzero(sl.any(axis=1)), np.flatnonzero(sl.any(axis=0))
        box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
        out[k][box] = ndimage.distance_transform_edt(sl[box], sampling=(sy, sx))
    return out


@dataclass(frozen=True)
class CentrePoints:
    """Ridge voxels of the radius map: index (n, 3) as (k, j, i), radius (n,) in mm."""

    index: np.ndarray
    radius: np.ndarray

    def at_level(self, level: str) -> np.ndarray:
        lo, hi = LEVEL_RADII[level]
        return np.flatnonzero((self.radius >= lo) & (self.radius < hi))


def centre_points(radius: np.ndarray) -> CentrePoints:
    """Voxels whose radius is the maximum of their in-plane 3 x 3 neighbourhood (a cross-section's centre)."""
    ridge = (radius > 0) & (radius >= ndimage.maximum_filter(radius, size=(1, 3, 3)))
    idx = np.argwhere(ridge)
    return CentrePoints(index=idx, radius=radius[ridge])


def trace(artery: np.ndarray, seed: np.ndarray, length_mm: float, spacing: tuple[float, float, float],
          margin_mm: float = 15.0) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """(box, bool path in the box): skeleton voxels within length/2 (along the skeleton) of the seed."""
    step = np.array(spacing[::-1])  # (k, j, i) order
    half = (length_mm / 2 + margin_mm) / step
    lo = np.maximum(np.floor(seed - half).astype(int), 0)
    hi = np.minimum(np.ceil(seed + half).astype(int) + 1, artery.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    local = artery[box]
    lab, _ = ndimage.label(local, structure=np.ones((3, 3, 3), bool))
    own = lab == lab[tuple(seed - lo)]  # the branch the seed is in, not a neighbour crossing the box
    skel = skeletonize(own) > 0
    path = np.zeros(local.shape, bool)
    pts = np.argwhere(skel)
    if len(pts) == 0:
        path[tuple(seed - lo)] = True
        return box, path  # type: ignore[return-value]
    start = int(np.argmin((((pts - (seed - lo)) * step) ** 2).sum(axis=1)))
    dist = _geodesic(pts, skel, step, start)
    keep = pts[dist <= length_mm / 2]
    path[tuple(keep.T)] = True
    return box, path  # type: ignore[return-value]


def _geodesic(pts: np.ndarray, skel: np.ndarray, step: np.ndarray, start: int) -> np.ndarray:
    """Distance (mm) along the 26-connected skeleton from pts[start] to every skeleton voxel."""
    order = -np.ones(skel.shape, np.int64)
    order[tuple(pts.T)] = np.arange(len(pts))
    rows, cols, w = [], [], []
    for off in np.argwhere(np.ones((3, 3, 3))) - 1:
        if not off.any():
            continue
        nb = pts + off
        ok = np.all((nb >= 0) & (nb < skel.shape), axis=1)
        tgt = np.full(len(pts), -1)
        tgt[ok] = order[tuple(nb[ok].T)]
        hit = tgt >= 0
        rows.append(np.flatnonzero(hit))
        cols.append(tgt[hit])
        w.append(np.full(hit.sum(), float(np.linalg.norm(off * step))))
    graph = coo_matrix((np.concatenate(w), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(len(pts), len(pts))).tocsr()
    return dijkstra(graph, indices=start)
