"""HU of a real-anatomy phantom in one phase: tissue values, lung texture, partial volume, noise.

Both phases are rendered from the same tissue volume and masks; only the HU table changes.
CTPA values come from the real crop (real_fit.json "enhancement"): pulmonary artery around its
measured mean, heart and aorta in the measured proportions; non-contrast blood is ~40 HU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import TISSUES
from .grid import Grid
from .kernel_noise import kernel_noise
from .noise import smooth_field

PHASES = ("ctpa", "non_contrast")


@dataclass(frozen=True)
class PhaseHU:
    """HU of each tissue code in one phase."""

    phase: str
    values: dict[str, float]

    def table(self) -> np.ndarray:
        lut = np.full(256, -1000.0, np.float32)
        for name, value in self.values.items():
            lut[TISSUES[name]] = value
        return lut


def sample_phases(rng: np.random.Generator, enhancement: dict) -> dict[str, PhaseHU]:
    """One patient's tissue HU in both phases (the same draws where contrast does not matter)."""
    base = {"air": -1000.0, "table": 250.0, "fat": rng.uniform(-115, -90), "muscle": rng.uniform(40, 60),
            "bone": rng.uniform(600, 850), "marrow": rng.uniform(180, 300), "lung": rng.uniform(-875, -840),
            "mediastinum": rng.uniform(-100, -70), "airway": -1000.0, "airway_wall": rng.uniform(0, 30),
            "spinal_canal": 25.0}
    blood = float(rng.uniform(35, 48))
    plain = dict(base, myocardium=rng.uniform(40, 55), blood=blood, aorta=blood, artery=blood, vein=blood,
                 abdomen=rng.uniform(50, 65))
    lo, _, hi = enhancement["pa_hu_p5_p50_p95"]
    pa = float(np.clip(rng.normal(enhancement["pa_hu_mean"], 25), lo + 80, hi - 30))
    ratio_aorta = enhancement["aorta_hu_median"] / enhancement["pa_hu_mean"]
    ctpa = dict(base, myocardium=rng.uniform(100, 130), blood=0.75 * pa, artery=pa,
                vein=pa * rng.uniform(0.45, 0.7), aorta=pa * ratio_aorta * rng.uniform(0.6, 1.0),
                abdomen=rng.uniform(70, 100))
    return {"ctpa": PhaseHU("ctpa", {k: float(v) for k, v in ctpa.items()}),
            "non_contrast": PhaseHU("non_contrast", {k: float(v) for k, v in plain.items()})}


def lung_texture(tissue: np.ndarray, grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """float32 HU offsets in the lung: 6 mm and 2 mm mottling plus the dependent (posterior) gradient."""
    lung = tissue == TISSUES["lung"]
    out = np.zeros(tissue.shape, np.float32)
    ks, js = np.flatnonzero(lung.any(axis=(1, 2))), np.flatnonzero(lung.any(axis=(0, 2)))
    iis = np.flatnonzero(lung.any(axis=(0, 1)))
    if ks.size == 0:
        return out
    box = (slice(ks[0], ks[-1] + 1), slice(js[0], js[-1] + 1), slice(iis[0], iis[-1] + 1))
    shape = lung[box].shape
    field = 14 * smooth_field(shape, grid, rng, 6.0) + 8 * smooth_field(shape, grid, rng, 2.0)
    y = grid.y[box[1]]
    field += (45 * (y - y[0]) / max(float(y[-1] - y[0]), 1.0)).astype(np.float32)[None, :, None]
    out[box] = np.where(lung[box], field, 0)
    return out


def render_phase(tissue: np.ndarray, hu_table: PhaseHU, texture: np.ndarray, edits: "list[tuple]",
                 grid: Grid, noise_std: float, kernel: str, noise_seed: int) -> np.ndarray:
    """int16 HU: tissue values + texture, then `edits` (index mask or (box, mask), mode, value),
    partial-volume blur (0.6 mm in plane, 0.35 slice along z), kernel-textured noise."""
    hu = hu_table.table()[tissue]
    hu += texture
    for box, mask, mode, value in edits:
        region = hu[box]
        if mode == "add":
            region[mask] += value
        else:
            region[mask] = value
    sig_xy = 0.6 / grid.pixel
    ndimage.gaussian_filter(hu, sigma=(0.35, sig_xy, sig_xy), output=hu, truncate=3.0)
    hu += kernel_noise(hu.shape, grid.pixel, noise_std, kernel, np.random.default_rng(noise_seed))
    np.clip(hu, -1024, 3071, out=hu)
    return np.rint(hu).astype(np.int16)
