"""Emboli placed along a real artery tree: level by lumen radius, length from the FUMPE fit,
shape from a central or eccentric partial filling defect to occlusion. Clot voxels are always
artery voxels (the clot is cut out of the lumen, never drawn over the wall).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .centrelines import LEVEL_RADII, LEVELS, CentrePoints, trace
from .findings import Finding
from .real_fit import LogNormal

SHAPES = ("central", "eccentric", "occlusive")
LEVEL_WEIGHTS = {"mixed": (0.2, 0.3, 0.3, 0.2), "easy": (0.5, 0.5, 0.0, 0.0), "hard": (0.0, 0.0, 0.55, 0.45)}
MAX_LENGTH_MM = {"main": 120.0, "lobar": 80.0, "segmental": 45.0, "subsegmental": 25.0}


@dataclass
class Clot:
    """One placed embolus: its voxels (bool, in `box`), what it is, and its two phases' HU."""

    box: tuple
    mask: np.ndarray
    level: str
    shape: str
    length_mm: float
    ctpa_hu: float
    plain_hu: float

    def finding(self, spacing: tuple[float, float, float], side: str) -> Finding:
        vol = float(self.mask.sum() * np.prod(spacing)) / 1000
        slices = int(self.mask.any(axis=(1, 2)).sum())
        return Finding("pe", {"level": self.level, "shape": self.shape, "occlusive": int(self.shape == "occlusive"),
                              "side": side, "length_mm": round(self.length_mm, 1), "volume_ml": round(vol, 3),
                              "slices": slices, "hu": round(self.ctpa_hu)})


def plan_clots(artery: np.ndarray, radius: np.ndarray, centres: CentrePoints, spacing: tuple[float, float, float],
               fit: dict, rng: np.random.Generator, difficulty: str = "mixed", count: "int | None" = None) -> list[Clot]:
    """1 + Poisson(fitted) clots (or `count`), each at a level drawn for `difficulty`."""
    if difficulty not in LEVEL_WEIGHTS:
        raise ValueError(f"difficulty must be one of {tuple(LEVEL_WEIGHTS)}, got {difficulty!r}")
    length_law = LogNormal(**fit["length_mm"]["lognormal"])
    n = count if count is not None else 1 + int(rng.poisson(fit["clots_per_patient"]["poisson_mean_minus_1"]))
    weights = np.array(LEVEL_WEIGHTS[difficulty])
    clots: list[Clot] = []
    taken = np.zeros(artery.shape, bool)
    for _ in range(n * 4):  # a few tries per clot: a level may be missing on a small grid
        if len(clots) == n:
            break
        level = str(rng.choice(LEVELS, p=weights / weights.sum()))
        cand = centres.at_level(level)
        if cand.size == 0:
            continue
        seed = centres.index[int(rng.choice(cand))]
        if taken[tuple(seed)]:
            continue
        length = length_law.sample(rng, 2 * LEVEL_RADII[level][0], MAX_LENGTH_MM[level])
        clot = _shape_clot(artery, radius, seed, length, spacing, level, rng)
        if clot is not None and not (taken[clot.box] & clot.mask).any():
            taken[clot.box] |= clot.mask
            clots.append(clot)
    return clots


def _shape_clot(artery, radius, seed, length, spacing, level, rng) -> "Clot | None":
    box, path = trace(artery, seed, length, spacing)
    lumen = artery[box]
    step = np.array(spacing[::-1])
    d, near = ndimage.distance_transform_edt(~path, sampling=step, return_indices=True)
    r = np.maximum(radius[box][tuple(near)], float(step[1:].min()))  # lumen radius at the nearest centre voxel
    occl_p = 0.3 if level == "main" else 0.45
    u = rng.random()
    shape = "occlusive" if u < occl_p else ("central" if u < occl_p + (1 - occl_p) / 2 else "eccentric")
    reach = d <= 1.3 * r + step[1:].max()  # the lumen around this stretch of centre line
    if shape == "occlusive":
        mask = lumen & reach
    elif shape == "central":  # "polo mint": contrast all round the clot
        mask = lumen & (d <= rng.uniform(0.45, 0.7) * r)
    else:  # mural: clot against one side of the wall, contrast on the other
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        grid = np.indices(lumen.shape).astype(np.float32)
        offset = sum((grid[a] - near[a]) * step[a] * direction[a] for a in range(3))
        mask = lumen & reach & (offset >= rng.uniform(-0.1, 0.4) * r)
    if mask.sum() < 3:
        return None
    t = rng.random()  # the same clot in both phases: unenhanced clot is a little denser than blood
    return Clot(box=box, mask=mask, level=level, shape=shape, length_mm=float(length),
                ctpa_hu=float(30 + 45 * t), plain_hu=float(50 + 10 * t))
