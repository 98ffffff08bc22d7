"""The body around a real case's lungs and vessels: chest wall, ribs, spine, heart, mediastinum,
aorta, SVC, trachea, abdomen, table. Everything is built from the lungs' per-slice convex hull
(the chest cavity) so that it fits that patient; the masks' own voxels are never overwritten.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image

from .anatomy import TISSUES
from .grid import Grid
from .real_case import RealCase
from .vessels import Tubes, paint_tubes

T = TISSUES


@dataclass(frozen=True)
class BodyFrame:
    """Landmarks (LPS mm) the body was built around; disease placement uses lung_base/lung_height."""

    centre_x: float
    centre_y: float
    lung_base: float
    lung_height: float
    heart_top: float
    arch_z: float
    table_y: float


def _case_grid(case: RealCase) -> Grid:
    x, y, z = case.axes()
    return Grid(x=x, y=y, z=z, thickness=case.spacing[2])


def _hulls(case: RealCase) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice chest cavity (convex hull of lung and vessels) and the slices that have lung."""
    content = case.lung | case.artery | case.vein
    has = case.lung.any(axis=(1, 2))
    ks = np.flatnonzero(has)
    nearest = ks[np.abs(np.arange(len(has))[:, None] - ks[None, :]).argmin(axis=1)]
    hull = np.zeros(case.shape, bool)
    step = 2  # hull of a half-resolution slice: the same outline, a quarter of the work
    for k in range(case.shape[0]):
        src = content[nearest[k], ::step, ::step]
        if k == 0 or has[k] or nearest[k] != nearest[k - 1]:  # slices past the lungs reuse their hull
            h = convex_hull_image(src) if src.any() else src
            small = np.kron(h, np.ones((step, step), bool))[:case.shape[1], :case.shape[2]]
        hull[k, :small.shape[0], :small.shape[1]] = small
    above = np.arange(len(has)) > ks[-1]
    sx = case.spacing[0]
    for k in np.flatnonzero(above):  # the neck narrows above the apices
        shrink = (k - ks[-1]) * case.spacing[2] * 0.35
        inside = ndimage.distance_transform_edt(hull[k], sampling=sx)
        hull[k] = inside > shrink
    return hull, has


def _centres(hull: np.ndarray, xs: np.ndarray, ys: np.ndarray, dz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slice: hull centre x, y and its posterior edge at the midline, smoothed along z."""
    nk = len(hull)
    cx, cy, post = np.zeros(nk), np.zeros(nk), np.zeros(nk)
    for k in range(nk):
        jj, ii = np.nonzero(hull[k, ::2, ::2])
        if jj.size == 0:
            cx[k], cy[k], post[k] = xs.mean(), ys.mean(), ys.mean() + 60
            continue
        x, y = xs[ii * 2], ys[jj * 2]
        cx[k], cy[k] = x.mean(), y.mean()
        mid = np.abs(x - cx[k]) < 15
        post[k] = y[mid].max() if mid.any() else y.max()
    size = max(1, int(round(30 / dz)))  # the spine is straight over a few cm
    return tuple(ndimage.median_filter(a, size=size, mode="nearest") for a in (cx, cy, post))  # type: ignore


def _floor(case: RealCase, dz: float) -> np.ndarray:
    """Diaphragm height (index units) per (j, i): the lowest lung voxel of each column, filled in and smoothed."""
    has = case.lung.any(axis=0)
    low = np.where(has, case.lung.argmax(axis=0), 0).astype(np.float32)
    if not has.all():  # under the heart the diaphragm is as low as the lowest lung around it
        idx = ndimage.distance_transform_edt(~has, return_distances=False, return_indices=True)
        filled = ndimage.minimum_filter(low[idx[0], idx[1]], size=int(60 / case.spacing[0]) | 1)
        low = np.where(has, low, filled)
    return ndimage.gaussian_filter(low, sigma=12.0 / case.spacing[0])


def build_body(case: RealCase, rng: np.random.Generator) -> tuple[np.ndarray, BodyFrame]:
    """Tissue codes (anatomy.TISSUES, uint8 (k, j, i)) of the whole chest around the case's masks."""
    nk, nj, ni = case.shape
    sx, sy, sz = case.spacing
    xs, ys, zs = case.axes()
    hull, has = _hulls(case)
    cx, cy, post = _centres(hull, xs, ys, sz)
    floor = _floor(case, sz)
    ks = np.flatnonzero(has)
    lung_base, lung_top = float(zs[ks[0]]), float(zs[ks[-1]])
    outside_art = case.artery & ~ndimage.binary_dilation(case.lung, iterations=1)
    art_k = np.flatnonzero(outside_art.any(axis=(1, 2)))
    root_z = float(zs[art_k[0]]) if art_k.size else lung_base + 0.45 * (lung_top - lung_base)
    top_art_z = float(zs[art_k[-1]]) if art_k.size else lung_base + 0.7 * (lung_top - lung_base)
    heart_top = root_z + 10.0
    arch_z = top_art_z + 18.0
    wall0, fat0 = rng.uniform(9, 14), rng.uniform(6, 30)
    tissue = np.zeros(case.shape, np.uint8)
    X = xs[None, :]
    Y = ys[:, None]
    body_post = -np.inf
    for k in range(nk):
        h = hull[k]
        dout = ndimage.distance_transform_edt(~h, sampling=(sy, sx)) if h.any() else np.full((nj, ni), np.inf)
        para = np.exp(-((X - cx[k]) / 40.0) ** 2) * (Y > cy[k])  # paraspinal muscles behind the cavity
        wall = wall0 + 38 * para
        fat = fat0 * (1 - 0.5 * (Y > cy[k]))
        body = h | (dout <= wall + fat)
        sl = tissue[k]
        sl[body] = T["fat"]
        sl[body & ~h & (dout <= wall)] = T["muscle"]
        sl[h] = T["mediastinum"]
        _ribs(sl, h, dout, X, Y, cx[k], cy[k], float(zs[k]), lung_top, sz)
        below = float(k) < floor - 1.0
        sl[h & below] = T["abdomen"]
        sl[h & ~below & (float(k) < floor + 3.0 / sz)] = T["muscle"]  # diaphragm
        if zs[k] < heart_top:
            heart = h & ~below & (Y < post[k] - 40)
            sl[heart] = T["myocardium"]
            inner = ndimage.distance_transform_edt(heart, sampling=(sy, sx)) > 6
            sl[inner] = T["blood"]
        _spine(sl, X, Y, cx[k], post[k])
        if body.any():
            body_post = max(body_post, float(ys[np.flatnonzero(body.any(axis=1))[-1]]))
    grid = _case_grid(case)
    frame = BodyFrame(centre_x=float(np.median(cx)), centre_y=float(np.median(cy)), lung_base=lung_base,
                      lung_height=lung_top - lung_base, heart_top=heart_top, arch_z=arch_z, table_y=body_post + 4)
    _great_vessels(tissue, grid, case, frame, np.median(post), rng)
    _table(tissue, ys, frame.table_y)
    tissue[case.lung] = T["lung"]
    tissue[case.vein] = T["vein"]
    tissue[case.artery] = T["artery"]
    return tissue, frame


def _ribs(sl, h, dout, X, Y, cx, cy, z, lung_top, sz) -> None:
    """Ribs hug the cavity and slope down to the front: an axial slice cuts each one as a short arc."""
    band = ~h & (dout > 1.0) & (dout < 8.0)
    jj, ii = np.nonzero(band)
    if jj.size == 0:
        return
    x, y = X[0, ii], Y[jj, 0]
    phi = np.arctan2(np.abs(x - cx), y - cy)  # 0 = posterior midline, pi = anterior
    ok = (phi > 0.45) & (phi < 2.5)
    gap = 26.0
    zrel = z + 95.0 * (1 - np.cos(phi)) / 2 - (lung_top + 10)
    frac = zrel / gap
    dist = np.abs(frac - np.round(frac)) * gap
    rib = ok & (dist < 2.5 + 0.5 * sz) & (-np.round(frac) >= 0) & (-np.round(frac) < 12)
    cortex = (dout[jj, ii] < 2.5) | (dout[jj, ii] > 6.5) | (dist > 1.5 + 0.5 * sz)
    sl[jj[rib & cortex], ii[rib & cortex]] = T["bone"]
    sl[jj[rib & ~cortex], ii[rib & ~cortex]] = T["marrow"]


def _spine(sl, X, Y, cx, post) -> None:
    """Vertebral body in the posterior cavity, canal, arch and spinous process behind it."""
    vy, canal = post - 16.0, post + 9.0
    keep = (sl == T["lung"]) | (sl == T["artery"]) | (sl == T["vein"])
    arch = (((X - cx) / 17) ** 2 + ((Y - canal) / 13) ** 2 <= 1) | ((np.abs(X - cx) < 4) & (Y > canal) & (Y < canal + 34))
    vb = ((X - cx) / 19) ** 2 + ((Y - vy) / 15) ** 2 <= 1
    core = ((X - cx) / 16.5) ** 2 + ((Y - vy) / 12.5) ** 2 <= 1
    sl[arch & ~keep] = T["bone"]
    sl[vb & ~keep] = T["bone"]
    sl[core & ~keep] = T["marrow"]
    sl[(((X - cx) / 8) ** 2 + ((Y - canal) / 7) ** 2 <= 1) & ~keep] = T["spinal_canal"]


def _great_vessels(tissue: np.ndarray, grid: Grid, case: RealCase, f: BodyFrame, post: float,
                   rng: np.random.Generator) -> None:
    """Aorta (ascending, arch, descending), SVC and trachea as tubes in the soft tissue of the cavity.

    The SVC is coded "blood" so that "vein" stays exactly the case's pulmonary vein mask."""
    z0, z1 = float(grid.z[0]) - 10, float(grid.z[-1]) + 10
    cx = f.centre_x
    r_asc, r_desc = rng.uniform(13, 17), rng.uniform(10, 13)
    desc = np.array([cx + 24, post - 34])
    asc = np.array([cx - 12, f.centre_y - 25])
    aorta, svc, trachea = Tubes(), Tubes(), Tubes()
    aorta.polyline([np.array([*asc, f.heart_top - 25]), np.array([*asc, f.arch_z - 12]),
                    np.array([cx + 4, 0.5 * (asc[1] + desc[1]), f.arch_z]), np.array([*desc, f.arch_z - 12]),
                    np.array([*desc, z0])], [r_asc, r_asc, 0.5 * (r_asc + r_desc), r_desc, r_desc])
    svc.polyline([np.array([asc[0] - 26, asc[1] + 6, z1]), np.array([asc[0] - 26, asc[1] + 6, f.heart_top - 10])],
                 [9.0, 9.0])
    ty = post - 50
    trachea.polyline([np.array([cx, ty, z1]), np.array([cx, ty, f.arch_z - 14])], [9.0, 9.0])
    soft = (tissue == T["mediastinum"]) | (tissue == T["myocardium"]) | (tissue == T["blood"])
    soft &= ~(case.lung | case.artery | case.vein)
    for tubes, code, grow in ((trachea, T["airway_wall"], 1.5), (trachea, T["airway"], 0.0),
                              (aorta, T["aorta"], 0.0), (svc, T["blood"], 0.0)):
        frac = np.zeros(tissue.shape, np.uint8)
        paint_tubes(grid, tubes, frac, grow=grow)
        tissue[(frac >= 128) & soft] = code


def _table(tissue: np.ndarray, ys: np.ndarray, y0: float) -> None:
    """Carbon-fibre shells of the couch under the back (its foam core is close to air)."""
    rows = np.flatnonzero(((ys > y0) & (ys < y0 + 3)) | ((ys > y0 + 28) & (ys < y0 + 31)))
    sub = tissue[:, rows, :]
    sub[sub == T["air"]] = T["table"]
    tissue[:, rows, :] = sub
