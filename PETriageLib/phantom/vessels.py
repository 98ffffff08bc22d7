"""Tubular structures: aorta, pulmonary arteries and veins (branching trees) and airways.

Each structure is a set of tapered line segments ("tubes"); trees grow from the hila into the
lung by random bifurcation with Murray's law radii, so calibre falls from central (~25 mm) to
subsegmental (~1.5 mm). Tubes are rasterised with an analytic partial-volume fraction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .anatomy import LungLookup, Patient
from .grid import Grid


@dataclass
class Tubes:
    """Tapered segments a->b with radii ra->rb; parent index (-1 for roots)."""

    a: list = field(default_factory=list)
    b: list = field(default_factory=list)
    ra: list = field(default_factory=list)
    rb: list = field(default_factory=list)
    parent: list = field(default_factory=list)
    gen: list = field(default_factory=list)

    def add(self, a, b, ra: float, rb: float | None = None, parent: int = -1, gen: int = 0) -> int:
        self.a.append(np.asarray(a, float))
        self.b.append(np.asarray(b, float))
        self.ra.append(float(ra))
        self.rb.append(float(ra if rb is None else rb))
        self.parent.append(parent)
        self.gen.append(gen)
        return len(self.a) - 1

    def polyline(self, points, radii, gen: int = 0, parent: int = -1) -> int:
        for p0, p1, r0, r1 in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
            parent = self.add(p0, p1, r0, r1, parent, gen)
        return parent

    def __len__(self) -> int:
        return len(self.a)

    def children(self, idx: int) -> list[int]:
        return [i for i, p in enumerate(self.parent) if p == idx]


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def grow_tree(lung: LungLookup, rng: np.random.Generator, tubes: Tubes, start: np.ndarray, direction: np.ndarray,
              radius: float, parent: int, r_min: float, centre: np.ndarray, gen: int = 1) -> None:
    """Grow a bifurcating tree inside the lung from `start` (breadth-first, iterative)."""
    stack = [(np.asarray(start, float), unit(np.asarray(direction, float)), radius, parent, gen)]
    while stack:
        s, d, r, par, g = stack.pop()
        if len(tubes) > 9000:
            break
        end = None
        for attempt in range(6):  # a few tries to stay inside the lung, turning back inwards
            length = max(r * rng.uniform(4.0, 8.0) / (1 + 0.3 * attempt), 3.0)
            cand = s + d * length
            if g <= 1 or lung(cand):
                end = cand
                break
            d = unit(d + rng.normal(scale=0.5, size=3) + 0.6 * unit(lung.centre(s) - s))
        if end is None:
            continue
        r_end = r * 0.93
        idx = tubes.add(s, end, r, r_end, par, g)
        if r_end * 0.72 < r_min:
            continue
        u = rng.uniform(0.78, 0.9)
        radii = (r_end * u, r_end * (1 - u ** 3) ** (1 / 3))
        out = unit(end - centre)
        perp = unit(np.cross(d, unit(rng.normal(size=3))))
        for rc, sign in zip(radii, (1.0, -1.0)):
            ang = np.deg2rad(rng.uniform(15, 30) if rc == radii[0] else rng.uniform(35, 60))
            dc = unit(np.cos(ang) * d + sign * np.sin(ang) * perp + 0.25 * out)
            stack.append((end, dc, rc, idx, g + 1))


@dataclass
class Vasculature:
    aorta: Tubes
    svc: Tubes
    arteries: Tubes
    veins: Tubes
    airways: Tubes
    bifurcation: np.ndarray  # pulmonary trunk bifurcation point
    n_central: int  # arteries[:n_central] are trunk + main pulmonary arteries


LOBES = {  # initial lobar/segmental directions from each hilum (x, y, z)
    -1: [(-0.3, 0.1, 1.0), (-0.4, -0.6, 0.8), (-0.5, -0.9, -0.3), (-0.2, 0.5, -1.0), (-0.6, 0.6, -0.2),
         (-0.7, -0.2, -0.8)],
    1: [(0.3, -0.1, 1.0), (0.4, -0.6, 0.8), (0.5, -0.9, -0.3), (0.2, 0.5, -1.0), (0.6, 0.6, -0.1),
        (0.7, -0.2, -0.8)],
}


def build_vasculature(p: Patient, rng: np.random.Generator) -> Vasculature:
    s, H, ay = p.s, p.lung_height, p.cav_ay
    top = H + 80
    lung = LungLookup(p)
    # aorta: root -> ascending -> arch -> descending past the diaphragm
    aorta = Tubes()
    hc, hr = p.heart_c, p.heart_r
    ra, rd = 15 * s * rng.uniform(0.9, 1.15), 11.5 * s * rng.uniform(0.9, 1.15)
    pts = [hc + [-15 * s, 5, 0.3 * hr[2]], [-10 * s, -0.2 * ay, 0.8 * H], [0, -0.05 * ay, 0.87 * H],
           [18 * s, 0.35 * ay, 0.86 * H], [20 * s, p.spine_y - 20 * s, 0.78 * H], [20 * s, p.spine_y - 18 * s, -120]]
    aorta.polyline([np.asarray(q, float) for q in pts], [ra, ra, 0.5 * (ra + rd), rd, rd, rd])
    svc = Tubes()
    svc.polyline([np.array([-32 * s, -0.2 * ay, top]), np.array([-30 * s, -0.18 * ay, hc[2] + 0.5 * hr[2]])],
                 [9 * s, 9 * s])
    # pulmonary trunk from the right ventricle outflow to the bifurcation, then right/left PA
    art = Tubes()
    rt = 13.5 * s * rng.uniform(0.9, 1.2)  # dilated trunks happen
    bif = np.array([10 * s, 0.0, 0.64 * H])
    rvot = hc + np.array([-5 * s, -0.75 * hr[1], 0.6 * hr[2]])
    trunk = art.polyline([rvot, np.array([18 * s, -0.28 * ay, 0.58 * H]), bif], [rt, rt, rt], gen=-1)
    hil_r, hil_l = p.hilum(-1), p.hilum(1)
    rpa = art.polyline([bif, np.array([-15 * s, 0.05 * ay, 0.63 * H]), hil_r], [0.75 * rt, 0.72 * rt, 0.7 * rt],
                       gen=0, parent=trunk)
    lpa = art.polyline([bif, np.array([35 * s, 0.12 * ay, 0.67 * H]), hil_l], [0.75 * rt, 0.72 * rt, 0.7 * rt],
                       gen=0, parent=trunk)
    n_central = len(art)
    for side, root in ((-1, rpa), (1, lpa)):
        hil = p.hilum(side)
        for d in LOBES[side]:
            grow_tree(lung, rng, art, hil, np.asarray(d) + rng.normal(scale=0.15, size=3),
                      0.45 * rt * rng.uniform(0.85, 1.05), root, 0.6, hil)
    # veins: from the left atrium (posterior heart) to the lower hila, then trees
    veins = Tubes()
    la = hc + np.array([-5 * s, 0.7 * hr[1], 0.35 * hr[2]])
    for side in (-1, 1):
        for dz, dirs in ((0.47, [(0.4, 0.3, 1.0), (0.8, -0.6, 0.1)]), (0.38, [(0.3, 0.6, -1.0), (0.9, 0.5, -0.2)])):
            vh = np.array([side * 48 * s, 0.22 * ay, dz * H])
            root = veins.add(la, vh, 8 * s, 7 * s, -1, 0)
            for d in dirs:
                dd = np.array([side * d[0], d[1], d[2]]) + rng.normal(scale=0.15, size=3)
                grow_tree(lung, rng, veins, vh, dd, 5.5 * s, root, 0.6, vh)
    airways = _airways(p, rng, art, n_central)
    return Vasculature(aorta, svc, art, veins, airways, bif, n_central)


def _airways(p: Patient, rng: np.random.Generator, art: Tubes, n_central: int) -> Tubes:
    """Trachea and main bronchi, then bronchi running beside the larger arteries."""
    s, H = p.s, p.lung_height
    air = Tubes()
    ty = p.trachea_y
    car = np.array([0, ty, p.carina_z])
    t = air.polyline([np.array([0, ty, H + 80]), car], [9 * s, 9 * s])
    for side in (-1, 1):  # main bronchi run down and out at 25-45 degrees
        hil = p.hilum(side) + np.array([0, 10 * s, -12 - (10 if side > 0 else 0)])
        air.add(car, hil, 7 * s, 5.5 * s, t, 0)
    for i in range(n_central, len(art)):
        r = art.ra[i]
        if art.gen[i] > 5 or r < 1.6:
            continue
        d = unit(art.b[i] - art.a[i])
        side = np.sign(art.a[i][0]) or 1.0
        off = unit(np.cross(d, np.array([0, 0, 1.0])) * side + np.array([0, 0.4, 0])) * (art.ra[i] * 1.9 + 1.0)
        air.add(art.a[i] + off, art.b[i] + off, 0.85 * r, 0.85 * art.rb[i], -1, art.gen[i])
    return air


def tube_fraction(grid: Grid, a: np.ndarray, b: np.ndarray, ra: float, rb: float):
    """(voxel box, float32 partial-volume fraction in the box) of one tapered tube, or None.

    In thick slices a tube counts over the whole slab, weakened where it is thinner than the slab.
    """
    h = grid.pixel
    half = 0.5 * grid.thickness
    slab = grid.thickness > 1.5 * h
    rmax = max(ra, rb) + h + (half if slab else 0)
    box = grid.index_range(np.minimum(a, b) - rmax, np.maximum(a, b) + rmax)
    if box is None:
        return None
    Z, Y, X = grid.coords(box)
    d = b - a
    l2 = max(float(d @ d), 1e-9)
    px, py, pz = X - a[0], Y - a[1], Z - a[2]
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / l2, 0.0, 1.0)
    qx, qy, qz = px - t * d[0], py - t * d[1], pz - t * d[2]
    if slab:
        qz = np.maximum(np.abs(qz) - half, 0.0)
    r = ra + t * (rb - ra)
    f = np.clip(0.5 - (np.sqrt(qx * qx + qy * qy + qz * qz) - r) / h, 0.0, 1.0).astype(np.float32)
    if slab:
        f *= min(1.0, (2 * min(ra, rb) + h) / grid.thickness)
    return box, f


def paint_tubes(grid: Grid, tubes: Tubes, out: np.ndarray, grow: float = 0.0, scale: float = 1.0) -> None:
    """Max-combine each tube's fraction (0-255, uint8) into `out` (k, j, i); radius*scale + grow."""
    for n in range(len(tubes)):
        got = tube_fraction(grid, tubes.a[n], tubes.b[n], tubes.ra[n] * scale + grow, tubes.rb[n] * scale + grow)
        if got is not None:
            box, f = got
            np.maximum(out[box], (f * 255 + 0.5).astype(np.uint8), out=out[box])
