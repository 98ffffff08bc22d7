"""Paint the static anatomy of each axial slice (body, table, bones, organs, lungs, heart).

Work is limited to a window around the body and uses separable (1-D x term + 1-D y term)
ellipse equations, so a 512 x 512 slice costs a few milliseconds.
"""
from __future__ import annotations

import numpy as np

from .anatomy import TISSUES, Patient, cavity_scale, dome, in_heart, in_lung, in_spine_region
from .grid import Grid

T = TISSUES
F32 = np.float32


class SliceRenderer:
    """Callable painting one slice: renderer(z, hu_slice, tissue_slice)."""

    def __init__(self, p: Patient, grid: Grid, table_u: float):
        self.p, self.grid = p, grid
        bx = p.cav_ax + p.wall + p.fat + 4
        self.ytab = p.cav_ay + p.wall + 0.7 * p.fat + 6 + 20 * table_u
        self.sj = _axis_window(grid.y, -(p.cav_ay + p.wall + p.fat + 4), self.ytab + 32)
        self.si = _axis_window(grid.x, -max(bx, 212), max(bx, 212))
        self.x = grid.x[self.si].astype(F32)
        self.y = grid.y[self.sj].astype(F32)
        self.X, self.Y = self.x[None, :], self.y[:, None]

    def __call__(self, z: float, hu_full: np.ndarray, tissue_full: np.ndarray) -> None:
        hu_full.fill(-1000.0)
        tissue_full.fill(T["air"])
        hu, tissue = hu_full[self.sj, self.si], tissue_full[self.sj, self.si]
        p, x, y, X, Y = self.p, self.x, self.y, self.X, self.Y
        c = float(cavity_scale(p, z))
        ax, ay = p.cav_ax * c, p.cav_ay * c
        self._table(hu, tissue)
        # body outline (flatter back), muscle layer, paraspinal muscles, cavity
        bx, by = ax + p.wall + p.fat, ay + p.wall + 0.7 * p.fat
        ty = np.where(y > 0, (np.abs(y) / by) ** 3, (y / by) ** 2)[:, None]
        body = (np.abs(X) / bx) ** 2.2 + ty <= 1
        _paint(hu, tissue, body, p.hu["fat"], "fat")
        mx, my = ax + p.wall, ay + p.wall
        tym = np.where(y > 0, (np.abs(y) / my) ** 2.6, (y / my) ** 2)[:, None]
        para = (np.abs(np.abs(x) - 32 * p.s) < 26 * p.s)[None, :] & (y > p.spine_y)[:, None]
        _paint(hu, tissue, (((np.abs(X) / mx) ** 2.1 + tym <= 1) | para) & body, p.hu["muscle"], "muscle")
        rho2 = (X / ax) ** 2 + (Y / ay) ** 2
        cav = rho2 < 1.0
        _paint(hu, tissue, cav, p.hu["mediastinum"], "mediastinum")
        self._ribs(z, hu, tissue, rho2, ax, ay)
        self._sternum_spine(z, hu, tissue, ay)
        self._abdomen(z, hu, tissue, cav, ay)
        _paint(hu, tissue, in_lung(p, X, Y, F32(z)), p.hu["lung"], "lung")
        self._heart(z, hu, tissue)

    def _table(self, hu, tissue):
        yt, ax_ok = self.y, (np.abs(self.x) < 210)[None, :]
        shell = (((yt > self.ytab) & (yt < self.ytab + 2.5)) | ((yt > self.ytab + 28) & (yt < self.ytab + 30.5)))
        foam = (yt >= self.ytab + 2.5) & (yt <= self.ytab + 28)
        _paint(hu, tissue, ax_ok & foam[:, None], -880.0, "table")
        _paint(hu, tissue, ax_ok & shell[:, None], 250.0, "table")

    def _ribs(self, z, hu, tissue, rho2, ax, ay):
        """Ribs slope down anteriorly, so an axial slice cuts each one as a short arc."""
        p = self.p
        outer = 1.0 + 9 * p.s / ay
        jj, ii = np.nonzero((rho2 >= 1.0) & (rho2 < outer * outer))
        if jj.size == 0:
            return
        xs, ys = self.x[ii], self.y[jj]
        phi = np.arctan2(np.abs(xs) * ay / ax, ys)  # 0 = posterior midline, pi = anterior
        ok = (phi > 0.4) & (phi < 2.6)  # spine behind, costal cartilage in front
        gap = 0.105 * p.lung_height
        zrel = z + 0.45 * p.lung_height * (1 - np.cos(phi)) / 2 - (p.lung_height + 12)
        frac = zrel / gap
        dist = np.abs(frac - np.round(frac)) * gap
        num = -np.round(frac)
        rib = ok & (dist < 4.0 + 0.5 * self.grid.thickness) & (num >= 0) & (num < 12)
        rho = np.sqrt(rho2[jj, ii])
        cortex = (rho < 1.0 + 1.5 / ay) | (rho > outer - 1.5 / ay) | (dist > 3.0)
        hu[jj[rib], ii[rib]] = np.where(cortex[rib], p.hu["bone"] + 150, p.hu["marrow"] + 80)
        tissue[jj[rib], ii[rib]] = T["bone"]

    def _sternum_spine(self, z, hu, tissue, ay):
        p, X, Y = self.p, self.X, self.Y
        if 0.25 * p.lung_height < z < 0.98 * p.lung_height:
            st = (np.abs(X) < 16 * p.s) & (Y < -ay + 2) & (Y > -ay - 12 * p.s)
            _paint(hu, tissue, st, p.hu["marrow"], "bone")
            hu[st & ((np.abs(X) > 13 * p.s) | (Y < -ay - 9 * p.s) | (Y > -ay - 1))] = p.hu["bone"]
        sy, s = p.spine_y, p.s
        canal_c = sy + 25 * s
        arch = ((X / (18 * s)) ** 2 + ((Y - canal_c) / (13 * s)) ** 2 <= 1) | (
            (np.abs(X) < 4 * s) & (Y > canal_c) & (Y < canal_c + 30 * s))
        _paint(hu, tissue, arch, p.hu["bone"], "bone")
        vb = (X / (17 * s)) ** 2 + ((Y - sy) / (15 * s)) ** 2 <= 1
        _paint(hu, tissue, vb, p.hu["marrow"], "marrow")
        _paint(hu, tissue, vb & ((X / (15 * s)) ** 2 + ((Y - sy) / (13 * s)) ** 2 > 1), p.hu["bone"] + 200, "bone")
        _paint(hu, tissue, (X / (8 * s)) ** 2 + ((Y - canal_c) / (7 * s)) ** 2 <= 1, 25.0, "spinal_canal")

    def _abdomen(self, z, hu, tissue, cav, ay):
        """Below the diaphragm: liver (right, crossing the midline in front), spleen and stomach (left)."""
        p, X, Y = self.p, self.X, self.Y
        if z > max(p.dome_left, p.dome_right) + 2:
            return
        d = dome(p, X, Y)
        below = cav & ~in_spine_region(p, X, Y)
        abd = below & (z < d - 4)
        _paint(hu, tissue, abd, p.hu["abdomen"], "abdomen")
        left = abd & (X > 10 * p.s - 40 * p.s * np.clip(-Y / ay, 0, 1))
        spleen = left & (Y > 0.1 * ay)
        stomach = left & (Y <= 0.1 * ay)
        _paint(hu, tissue, spleen, p.hu["abdomen"] - 12, "abdomen")
        _paint(hu, tissue, stomach, 15.0, "abdomen")
        gas = stomach & (z > d - 30) & (z < d - 8) & (Y < -0.15 * ay)
        _paint(hu, tissue, gas, -1000.0, "air")
        _paint(hu, tissue, below & (z >= d - 4) & (z <= d), p.hu["muscle"], "muscle")  # diaphragm

    def _heart(self, z, hu, tissue):
        """Pericardial fat, myocardium, right (anterior) and left blood pools."""
        p, X, Y = self.p, self.X, self.Y
        if abs(z - p.heart_c[2]) >= p.heart_r[2] * 1.1:
            return
        _paint(hu, tissue, in_heart(p, X, Y, z, 1.08) & (tissue != T["lung"]), p.hu["fat"], "mediastinum")
        _paint(hu, tissue, in_heart(p, X, Y, z), p.hu["myocardium"], "myocardium")
        inner = in_heart(p, X, Y, z, 0.8)
        split = -(X - p.heart_c[0]) * 0.55 - (Y - p.heart_c[1]) * 0.83
        _paint(hu, tissue, inner & (split > 4), p.hu["pa"], "blood")
        _paint(hu, tissue, inner & (split < -4), p.hu["lheart"], "blood")


def _axis_window(axis: np.ndarray, lo: float, hi: float) -> slice:
    step = axis[1] - axis[0]
    i0 = max(int(np.floor((lo - axis[0]) / step)), 0)
    i1 = min(int(np.ceil((hi - axis[0]) / step)) + 1, len(axis))
    return slice(i0, max(i1, i0))


def _paint(hu: np.ndarray, tissue: np.ndarray, mask: np.ndarray, value: float, name: str) -> None:
    hu[mask] = value
    tissue[mask] = T[name]
