"""Lung disease other than PE: consolidation, ground-glass opacity, nodules/masses, effusion, emphysema.

Each lesion is a region (voxel box + boolean mask) with how it changes the HU there:
"set" replaces the value, "add" raises it (ground glass keeps the vessels visible).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Patient, cavity_rho
from .findings import Finding, blob, pick_lung_point
from .grid import Grid


@dataclass
class Lesion:
    finding: Finding
    box: tuple  # (slice k, slice j, slice i)
    mask: np.ndarray  # bool, shape of the box
    mode: str  # "set" | "add"
    value: float  # HU (set) or HU increase (add)
    after_vessels: bool  # painted over vessels (nodules, effusion, bullae) or under them


def plan_lesions(p: Patient, grid: Grid, lung: np.ndarray, rng: np.random.Generator,
                 kinds: list[str]) -> list[Lesion]:
    out: list[Lesion] = []
    for kind in kinds:
        out += _MAKERS[kind](p, grid, lung, rng)
    return out


def _clip_to_lung(lung: np.ndarray, box, mask: np.ndarray) -> np.ndarray:
    return mask & lung[box]


def _consolidation(p, grid, lung, rng):
    c = pick_lung_point(lung, grid, rng, where=lambda x, y, z: z < 0.7 * p.lung_height)
    if c is None:
        return []
    radii = np.array([rng.uniform(20, 45), rng.uniform(20, 40), rng.uniform(20, 50)]) * p.s
    b = blob(grid, c, radii, rng, 0.4)
    if b is None:
        return []
    hu = float(rng.uniform(15, 50))
    side = "right" if c[0] < 0 else "left"
    return [Lesion(Finding("consolidation", {"side": side, "size_mm": round(2 * radii.mean()), "hu": round(hu)}),
                   b[0], _clip_to_lung(lung, b[0], b[1]), "set", hu, False)]


def _ggo(p, grid, lung, rng):
    out = []
    for _ in range(int(rng.integers(1, 4))):
        c = pick_lung_point(lung, grid, rng)
        if c is None:
            continue
        radii = np.array([rng.uniform(15, 40), rng.uniform(15, 35), rng.uniform(15, 45)]) * p.s
        b = blob(grid, c, radii, rng, 0.35)
        if b is None:
            continue
        add = float(rng.uniform(200, 330))  # -850 -> about -650..-520
        side = "right" if c[0] < 0 else "left"
        out.append(Lesion(Finding("ggo", {"side": side, "size_mm": round(2 * radii.mean()), "add_hu": round(add)}),
                          b[0], _clip_to_lung(lung, b[0], b[1]), "add", add, False))
    return out


def _nodule(p, grid, lung, rng):
    out = []
    for _ in range(int(rng.integers(1, 4))):
        r = float(rng.uniform(3, 12) if rng.random() < 0.7 else rng.uniform(12, 28))  # nodule or mass
        hu = float(rng.uniform(20, 60))
        for _try in range(6):  # a nodule lies (mostly) inside the lung, not across the chest wall
            c = pick_lung_point(lung, grid, rng)
            b = None if c is None else blob(grid, c, np.array([r, r, r]) * rng.uniform(0.85, 1.15, 3), rng,
                                            0.15 if r < 12 else 0.3)
            if b is not None and (mask := _clip_to_lung(lung, b[0], b[1])).sum() >= 0.7 * b[1].sum() > 0:
                break
        else:
            continue
        if mask.any():
            out.append(Lesion(Finding("nodule", {"diameter_mm": round(2 * r, 1), "hu": round(hu),
                                                 "side": "right" if c[0] < 0 else "left"}),
                              b[0], mask, "set", hu, True))
    return out


def _effusion(p, grid, lung, rng):
    """Dependent fluid along the posterior chest wall, thickest at the base."""
    out = []
    sides = [-1, 1] if rng.random() < 0.4 else [int(rng.choice([-1, 1]))]
    for side in sides:
        top = float(rng.uniform(0.25, 0.55) * p.lung_height)
        depth = float(rng.uniform(15, 45) * p.s)
        box = grid.index_range(np.array([-400, -400, grid.z[0]]), np.array([400, 400, top]))
        if box is None:
            continue
        Z, Y, X = grid.coords(box)
        rho = cavity_rho(p, X, Y, Z)
        thick = depth * np.sqrt(np.clip(1 - Z / top, 0, 1))
        post = np.clip((Y / p.cav_ay + 0.3) / 1.3, 0, 1)  # thinner anteriorly
        mask = (rho > 1 - thick * post / p.cav_ay) & (np.sign(X) == side) & lung[box]
        if mask.any():
            hu = float(rng.uniform(0, 20))
            out.append(Lesion(Finding("effusion", {"side": "right" if side < 0 else "left",
                                                   "depth_mm": round(depth), "hu": round(hu)}),
                              box, mask, "set", hu, True))
    return out


def _emphysema(p, grid, lung, rng):
    """Centrilobular/paraseptal low-attenuation holes, upper-lobe predominant."""
    n = int(rng.integers(25, 120))
    lesions = []
    for _ in range(n):
        c = pick_lung_point(lung, grid, rng, where=lambda x, y, z: z > 0.45 * p.lung_height)
        if c is None:
            break
        r = float(rng.uniform(2.5, 9))
        b = blob(grid, c, np.array([r, r, r]), rng, 0.1)
        if b is None:
            continue
        mask = _clip_to_lung(lung, b[0], b[1])
        if mask.any():
            lesions.append((b[0], mask))
    if not lesions:
        return []
    f = Finding("emphysema", {"holes": len(lesions)})
    return [Lesion(f, box, mask, "set", -990.0, True) for box, mask in lesions]


_MAKERS = {"consolidation": _consolidation, "ggo": _ggo, "nodule": _nodule, "effusion": _effusion,
           "emphysema": _emphysema}
