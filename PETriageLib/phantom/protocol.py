"""Scan protocol of a phantom study: field of view, slices, thickness, noise, DICOM identifiers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import uuid

import numpy as np
from pydicom.uid import UID

from PETriageLib.ingest.scan import name_based_uid
from .anatomy import Patient
from .grid import Grid

THICKNESSES = (0.625, 1.0, 1.25, 2.0, 2.5, 3.0, 5.0)
MIN_SLICES, MAX_SLICES = 60, 300


@dataclass
class Protocol:
    grid: Grid
    z_offset: float  # absolute table position of relative z = 0, mm
    noise_hu: float
    kernel: str
    kvp: int
    ma: int


def sample_protocol(p: Patient, rng: np.random.Generator, matrix: int, slices: int | None,
                    thickness: float | None) -> Protocol:
    """Choose FOV and slices so that the same anatomy in mm is covered at any matrix size."""
    if matrix < 64:
        raise ValueError(f"matrix must be at least 64 pixels, got {matrix}")
    if slices is not None and slices < 2:
        raise ValueError(f"slices must be at least 2, got {slices}")
    width = 2 * (p.cav_ax + p.wall + p.fat)
    fov = float(np.clip(width * rng.uniform(1.08, 1.28), 300, 500))
    pix = fov / matrix
    off_x, off_y = rng.uniform(-15, 15), rng.uniform(-5, 30)
    x = (np.arange(matrix) - (matrix - 1) / 2) * pix - off_x
    y = (np.arange(matrix) - (matrix - 1) / 2) * pix - off_y
    z0, z1 = -rng.uniform(8, 30), p.lung_height + rng.uniform(8, 30)
    extent = z1 - z0
    if slices is None:
        t = float(thickness if thickness is not None else rng.choice(THICKNESSES))
        n = int(np.clip(round(extent / t), MIN_SLICES, MAX_SLICES))
        spacing = t if thickness is not None else extent / n
        t = t if thickness is not None else max(t, round(spacing, 3))
    else:
        n = int(slices)
        spacing = float(thickness) if thickness is not None else extent / n
        t = float(thickness) if thickness is not None else round(spacing, 3)
    zc = 0.5 * (z0 + z1)
    z = zc + (np.arange(n) - (n - 1) / 2) * spacing
    base_noise = rng.uniform(10, 22)  # at 1 mm; thicker slices average more photons
    noise = float(base_noise / np.sqrt(max(t, 0.5)))
    return Protocol(grid=Grid(x=x, y=y, z=z, thickness=float(t)), z_offset=-float(rng.uniform(100, 400)),
                    noise_hu=noise, kernel=str(rng.choice(["B30f", "STANDARD", "FC13", "I30f"])),
                    kvp=int(rng.choice([100, 120])), ma=int(rng.integers(80, 350)))


def seeded_uid(*parts) -> UID:
    """A '2.25.<UUID>' UID (DICOM PS3.5 B.2) from a name-based UUID: same parts, same UID.

    (pydicom's generate_uid ignores entropy_srcs when prefix is None, so it cannot be used here.)
    """
    return UID(name_based_uid("urn:petriage:" + "/".join(map(str, parts)), uuid.NAMESPACE_URL))


def study_identifiers(seed: int, n_slices: int, rng: np.random.Generator) -> dict:
    """UIDs and names derived from the seed only, so the same seed gives the same files."""
    def uid(*parts) -> str:
        return seeded_uid("petriage-phantom", seed, *parts)

    day = date(2020, 1, 1) + timedelta(days=int(rng.integers(0, 5 * 365)))
    return {
        "patient_id": f"PHANTOM-{seed}",
        "patient_name": f"Phantom^{seed}",
        "study_uid": uid("study"),
        "series_uid": uid("series"),
        "frame_of_reference_uid": uid("frame"),
        "instance_uids": [uid("instance", k) for k in range(n_slices)],
        "study_date": day.strftime("%Y%m%d"),
        "accession": f"PH{seed % 10**8:08d}",
        "sex": str(rng.choice(["M", "F"])),
        "age": int(rng.integers(25, 90)),
    }
