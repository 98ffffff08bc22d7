"""Lung disease other than PE inside a real case's lungs.

Consolidation, ground glass, nodules and emphysema use the formula phantom's makers
(disease.py) on a grid whose coordinates are relative to the body centre and the lung base, as
those makers expect; effusion is a dependent layer of each real lung. Every lesion is cut to the
lung parenchyma, so the real vessels (and any clot in them) are never covered.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import TISSUES
from .disease import _MAKERS, Lesion
from .findings import Finding
from .grid import Grid
from .real_body import BodyFrame


@dataclass(frozen=True)
class LungFrame:
    """What disease.py's makers read of a patient: lung height (mm) and a body size factor."""

    lung_height: float
    s: float = 1.0


def plan_real_lesions(tissue: np.ndarray, grid: Grid, frame: BodyFrame, rng: np.random.Generator,
                      kinds: list[str]) -> list[Lesion]:
    lung = tissue == TISSUES["lung"]
    rel = Grid(x=grid.x - frame.centre_x, y=grid.y - frame.centre_y, z=grid.z - frame.lung_base,
               thickness=grid.thickness)
    p = LungFrame(lung_height=frame.lung_height)
    out: list[Lesion] = []
    for kind in kinds:
        made = _effusion(lung, rel, rng) if kind == "effusion" else _MAKERS[kind](p, rel, lung, rng)
        for les in made:
            les.mask = les.mask & lung[les.box]
            if les.mask.any():
                out.append(les)
    return out


def _effusion(lung: np.ndarray, grid: Grid, rng: np.random.Generator) -> list[Lesion]:
    """Fluid layering in the most posterior part of one or both lungs (supine), deepest at the base."""
    out = []
    sides = [-1, 1] if rng.random() < 0.4 else [int(rng.choice([-1, 1]))]
    ks = np.flatnonzero(lung.any(axis=(1, 2)))
    if ks.size == 0:
        return out
    z_top = grid.z[ks[0]] + rng.uniform(0.3, 0.55) * (grid.z[ks[-1]] - grid.z[ks[0]])
    for side in sides:
        depth = float(rng.uniform(15, 45))
        half = (np.sign(grid.x) == side)[None, None, :]
        mask = np.zeros(lung.shape, bool)
        for k in ks[grid.z[ks] < z_top]:
            sl = lung[k] & half[0]
            rows = np.flatnonzero(sl.any(axis=1))
            if rows.size == 0:
                continue
            level = grid.y[rows[-1]] - depth * np.sqrt(1 - (grid.z[k] - grid.z[ks[0]]) / (z_top - grid.z[ks[0]]))
            mask[k] = sl & (grid.y > level)[:, None]
        if mask.any():
            hu = float(rng.uniform(0, 20))
            box = (slice(None), slice(None), slice(None))
            out.append(Lesion(Finding("effusion", {"side": "right" if side < 0 else "left", "depth_mm": round(depth),
                                                   "hu": round(hu)}), box, mask, "set", hu, True))
    return out
