"""Findings with exact masks: pulmonary emboli (filling defects in arteries) and other lung disease."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .grid import Grid
from .vessels import Tubes, Vasculature, unit

# Label values of Study.masks; PE is painted last so it wins where findings overlap.
FINDING_CODES = {"pe": 1, "consolidation": 2, "ggo": 3, "nodule": 4, "effusion": 5, "emphysema": 6}
OTHER_KINDS = ("consolidation", "ggo", "nodule", "effusion", "emphysema")
PE_LEVELS = ("saddle", "main", "lobar", "segmental", "subsegmental")
PE_LEVELS_BY_DIFFICULTY = {
    "easy": ("saddle", "main", "lobar"),
    "hard": ("segmental", "subsegmental"),
    "mixed": PE_LEVELS,
}


@dataclass
class Finding:
    kind: str  # a FINDING_CODES key
    detail: dict = field(default_factory=dict)  # level, side, size, HU, ...

    def describe(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.kind}({extra})" if extra else self.kind


def _candidates(art: Tubes, n_central: int, level: str) -> list[int]:
    if level == "main":
        return [i for i in range(n_central) if art.gen[i] == 0]
    lo, hi = {"lobar": (4.0, 99), "segmental": (2.2, 4.0), "subsegmental": (1.1, 2.2)}[level]
    return [i for i in range(n_central, len(art)) if lo <= art.ra[i] < hi]


def plan_emboli(vasc: Vasculature, rng: np.random.Generator,
                difficulty: str) -> tuple[Tubes, list[float], list[Finding]]:
    """Clots as capsules along chosen artery segments (painted only where the lumen is), their HU."""
    art = vasc.arteries
    clots, hus, findings = Tubes(), [], []
    levels = PE_LEVELS_BY_DIFFICULTY[difficulty]
    n = int(rng.integers(1, 4 if difficulty != "hard" else 3))
    for _ in range(n):
        level = str(rng.choice(levels))
        occlusive = bool(rng.random() < (0.3 if level in ("saddle", "main") else 0.45))
        hu = float(rng.uniform(20, 70))
        if level == "saddle":  # straddles the bifurcation into both main arteries
            rpa, lpa = [i for i in range(vasc.n_central) if art.gen[i] == 0 and art.parent[i] < vasc.n_central
                        and np.allclose(art.a[i], vasc.bifurcation)][:2]
            r = art.ra[rpa] * rng.uniform(0.45, 0.65)
            for i in (rpa, lpa):
                end = art.a[i] + (art.b[i] - art.a[i]) * rng.uniform(0.4, 0.8)
                clots.add(vasc.bifurcation + np.array([0, 0, -r * 0.3]), end, r, r * 0.8)
            findings.append(Finding("pe", {"level": level, "occlusive": 0, "hu": round(hu)}))
            hus += [hu, hu]
            continue
        cand = _candidates(art, vasc.n_central, level)
        if not cand:
            continue
        i = int(rng.choice(cand))
        a, b, ra = art.a[i], art.b[i], art.ra[i]
        t0, t1 = sorted(rng.uniform(0.0, 1.0, 2))
        t1 = max(t1, t0 + 0.5) if level != "main" else max(t1, t0 + 0.3)
        p0, p1 = a + (b - a) * t0, a + (b - a) * min(t1, 1.0)
        if occlusive:
            clots.add(p0, p1, ra * 1.4, ra * 1.4)
            count = 1
            for c in art.children(i)[: int(rng.integers(1, 3))]:  # clot propagates into a branch
                cb = art.a[c] + (art.b[c] - art.a[c]) * rng.uniform(0.3, 1.0)
                clots.add(art.a[c], cb, art.ra[c] * 1.4, art.ra[c] * 1.4)
                count += 1
        else:
            rc = ra * rng.uniform(0.45, 0.75)
            d = unit(b - a)
            perp = unit(np.cross(d, unit(rng.normal(size=3))))
            off = perp * (ra - rc) * rng.uniform(0.0, 1.0)  # central ("polo mint") to mural
            clots.add(p0 + off, p1 + off, rc, rc * rng.uniform(0.7, 1.0))
            count = 1
        hus += [hu] * count
        side = "right" if a[0] < 0 else "left"
        findings.append(Finding("pe", {"level": level, "side": side, "occlusive": int(occlusive),
                                       "diameter_mm": round(2 * ra, 1), "hu": round(hu)}))
    return clots, hus, findings


def blob(grid: Grid, centre: np.ndarray, radii: np.ndarray, rng: np.random.Generator, lumpy: float = 0.25):
    """A lumpy ellipsoid: (box, bool mask in the box) or None when outside the grid."""
    box = grid.index_range(centre - radii * 1.4, centre + radii * 1.4)
    if box is None:
        return None
    Z, Y, X = grid.coords(box)
    f = 1 - ((X - centre[0]) / radii[0]) ** 2 - ((Y - centre[1]) / radii[1]) ** 2 - ((Z - centre[2]) / radii[2]) ** 2
    for _ in range(4):  # low-frequency bumps make the outline irregular
        k = rng.normal(size=3) * 2.5 / radii.mean()
        f = f + lumpy / 2 * np.sin(k[0] * X + k[1] * Y + k[2] * Z + rng.uniform(0, 6.3))
    return box, f > 0


def pick_lung_point(lung: np.ndarray, grid: Grid, rng: np.random.Generator, where=None) -> np.ndarray | None:
    """A random point (mm) inside the lung mask, optionally filtered by where(x, y, z) -> bool."""
    sub = lung[::2, ::4, ::4]
    idx = np.flatnonzero(sub)
    if idx.size == 0:
        return None
    k, j, i = np.unravel_index(rng.choice(idx, size=min(64, idx.size)), sub.shape)
    pts = np.stack([grid.x[i * 4], grid.y[j * 4], grid.z[k * 2]], axis=1)
    if where is not None:
        pts = pts[where(pts[:, 0], pts[:, 1], pts[:, 2])]
    return pts[0] if len(pts) else None
