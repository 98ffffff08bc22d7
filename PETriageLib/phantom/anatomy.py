"""Patient body model: analytic shapes (mm, patient-relative) for body, bones, mediastinum and lungs.

Coordinates: x = patient left (+), y = posterior (+), z = superior (+); (0, 0) is the body
centre in the axial plane and z = 0 the lowest point of the lungs (posterior recesses).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# Tissue codes of Study.tissues (what each voxel mostly is, before findings and noise).
TISSUES = {
    "air": 0, "table": 1, "fat": 2, "muscle": 3, "bone": 4, "lung": 5, "mediastinum": 6,
    "myocardium": 7, "blood": 8, "aorta": 9, "artery": 10, "vein": 11, "airway": 12,
    "airway_wall": 13, "abdomen": 14, "marrow": 15, "spinal_canal": 16,
}


@dataclass
class Patient:
    """Per-patient shape and enhancement parameters (all lengths in mm, densities in HU)."""

    s: float  # body size factor
    lung_height: float
    cav_ax: float  # chest cavity semi-axes (inside the ribs)
    cav_ay: float
    wall: float  # muscle + rib layer
    fat: float  # subcutaneous fat
    dome_right: float
    dome_left: float
    heart_c: np.ndarray
    heart_r: np.ndarray
    spine_y: float
    contrast: bool
    hu: dict = field(default_factory=dict)

    # --- derived landmarks -------------------------------------------------------------
    @property
    def carina_z(self) -> float:
        return 0.66 * self.lung_height

    @property
    def trachea_y(self) -> float:
        return self.spine_y - 38 * self.s

    def hilum(self, side: int) -> np.ndarray:
        """Hilum point of the right (side=-1) or left (side=+1) lung."""
        return np.array([side * 52 * self.s, 0.02 * self.cav_ay, 0.6 * self.lung_height + (8 if side > 0 else 0)])


def sample_patient(rng: np.random.Generator, contrast: bool) -> Patient:
    s = float(rng.uniform(0.88, 1.12))
    breath = float(rng.uniform(0.9, 1.08))
    H = 235 * s * breath
    cav_ax = 132 * s * rng.uniform(0.94, 1.06)
    cav_ay = 92 * s * rng.uniform(0.9, 1.1)
    heart_f = float(rng.uniform(0.92, 1.22))  # >1.15 looks like cardiomegaly
    dome_l = 0.22 * H * rng.uniform(0.85, 1.15)
    heart_r = np.array([58, 46, 52]) * s * heart_f
    heart_c = np.array([26 * s, -0.32 * cav_ay, dome_l * 0.9 + heart_r[2] * 0.55])
    blood = float(rng.uniform(35, 50))
    hu = {
        "fat": float(rng.uniform(-115, -90)), "muscle": float(rng.uniform(40, 60)),
        "lung": float(-870 + 60 * (1.08 - breath) / 0.18 + rng.uniform(-15, 15)),
        "bone": float(rng.uniform(450, 700)), "marrow": float(rng.uniform(180, 300)),
        "myocardium": float(rng.uniform(40, 55)), "abdomen": float(rng.uniform(50, 65)),
        "blood": blood, "pa": blood, "aorta": blood, "lheart": blood, "vein": blood,
        "mediastinum": float(rng.uniform(-100, -70)),
    }
    if contrast:  # CTPA: right heart and pulmonary arteries brightest, systemic side later
        pa = float(rng.uniform(260, 450))
        hu.update(pa=pa, aorta=float(pa * rng.uniform(0.45, 0.8)), vein=float(pa * rng.uniform(0.5, 0.8)),
                  myocardium=float(rng.uniform(90, 130)), abdomen=float(rng.uniform(70, 100)))
        hu["lheart"] = hu["vein"]
    return Patient(s=s, lung_height=H, cav_ax=cav_ax, cav_ay=cav_ay, wall=float(rng.uniform(12, 20) * s),
                   fat=float(rng.uniform(6, 35)), dome_right=float(dome_l + rng.uniform(8, 25)), dome_left=dome_l,
                   heart_c=heart_c, heart_r=heart_r, spine_y=0.8 * cav_ay, contrast=contrast, hu=hu)


# --- analytic regions (broadcastable x, y, z arrays) ---------------------------------------
def cavity_scale(p: Patient, z):
    """Thoracic cavity narrows towards the apex."""
    u = np.clip((z / p.lung_height - 0.55) / 0.45, 0, 1.2)
    return 1.0 - 0.22 * u * u


def cavity_rho(p: Patient, x, y, z):
    """Normalised elliptical radius of the chest cavity (1 = inner chest wall)."""
    c = cavity_scale(p, z)
    return np.sqrt((x / (p.cav_ax * c)) ** 2 + (y / (p.cav_ay * c)) ** 2)


def dome(p: Patient, x, y):
    """Height of the diaphragm under each lung: domed centrally, low in the recesses."""
    side = np.where(x < 0, -1.0, 1.0)
    top = np.where(x < 0, p.dome_right, p.dome_left)
    q = ((x - side * 0.5 * p.cav_ax) / (0.55 * p.cav_ax)) ** 2 + (y / p.cav_ay) ** 2
    return top * np.clip(1 - q, 0, 1) + 0.12 * p.lung_height * np.clip(-y / p.cav_ay, 0, 1)


def in_heart(p: Patient, x, y, z, scale: float = 1.0):
    r = p.heart_r * scale
    return ((x - p.heart_c[0]) / r[0]) ** 2 + ((y - p.heart_c[1]) / r[1]) ** 2 + ((z - p.heart_c[2]) / r[2]) ** 2 <= 1


def in_spine_region(p: Patient, x, y):
    """Vertebral body plus paravertebral soft tissue the lungs wrap around."""
    return (x / (26 * p.s)) ** 2 + ((y - p.spine_y) / (24 * p.s)) ** 2 <= 1


def mediastinum_halfwidth(p: Patient, y, z):
    """Half-width of the central mediastinum; wider at the great vessels."""
    u = z / p.lung_height
    base = 20 * p.s + 14 * p.s * np.exp(-((u - 0.72) / 0.12) ** 2)
    return base + 8 * p.s * np.clip((y - p.spine_y + 40 * p.s) / (40 * p.s), 0, 1)


def in_lung(p: Patient, x, y, z):
    """True where the point lies in lung parenchyma (either lung)."""
    H = p.lung_height
    rho = cavity_rho(p, x, y, z)
    ok = (rho < 0.985) & (np.abs(x) > mediastinum_halfwidth(p, y, z)) & (z > dome(p, x, y)) & (z < H)
    # apex: each lung tapers to a rounded, slightly posterior cap
    f2 = 1 - np.clip((z - 0.6 * H) / (0.4 * H), 0, 1) ** 2
    ax = 0.52 * p.cav_ax
    apex = ((np.abs(x) - ax) / ax) ** 2 + ((y - 0.1 * p.cav_ay) / p.cav_ay) ** 2 <= np.maximum(f2, 0)
    return ok & apex & ~in_heart(p, x, y, z, 1.12) & ~in_spine_region(p, x, y)


class LungLookup:
    """in_lung sampled once on a 2 mm grid, for the many point queries of tree growth."""

    STEP = 2.0

    def __init__(self, p: Patient):
        self.lo = np.array([-p.cav_ax, -p.cav_ay, -5.0])
        hi = np.array([p.cav_ax, p.cav_ay, p.lung_height + 5])
        axes = [np.arange(a, b + self.STEP, self.STEP, dtype=np.float32) for a, b in zip(self.lo, hi)]
        self.inside = in_lung(p, axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])
        self.dims = tuple(int(n) for n in self.inside.shape)
        self.half_x, self.mid_y, self.mid_z = 0.5 * p.cav_ax, 0.1 * p.cav_ay, 0.45 * p.lung_height

    def centre(self, point: np.ndarray) -> np.ndarray:
        """Middle of the lung on the point's side: where a stray branch should turn to."""
        side = 1.0 if point[0] > 0 else -1.0
        return np.array([side * self.half_x, self.mid_y, self.mid_z])

    def __call__(self, point: np.ndarray) -> bool:
        # plain floats: this runs once per candidate branch, thousands of times per study
        idx = [int(round((float(v) - float(lo)) / self.STEP)) for v, lo in zip(point, self.lo)]
        if any(i < 0 or i >= n for i, n in zip(idx, self.dims)):
            return False
        return bool(self.inside[idx[0], idx[1], idx[2]])
