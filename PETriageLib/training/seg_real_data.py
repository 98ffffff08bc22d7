"""Embolus segmentation data on real-anatomy phantoms: paired CTPA / non-contrast studies of the
same real case (identical geometry, clots and masks; phantom/real_study.py).

Training takes square patches so that CPU runs stay small: one centred near a clot pixel of every
slice with clot (jittered, so the clot is not always in the middle), and negatives centred on artery
pixels of slices without clot (vessels that are not clots: the hard negatives) and on random body
pixels. Evaluation takes whole studies (``RealSegStudy``), scored as volumes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from PETriageLib.phantom import FINDING_CODES
from PETriageLib.phantom.real_study import RealOptions, generate_real_studies
from PETriageLib.phantom.study import Study
from PETriageLib.preprocess.windows import stack_windows
from PETriageLib.training.seg_data import SegSlices

log = logging.getLogger(__name__)

ARTERY_TISSUE = "artery"


@dataclass(frozen=True)
class RealSegSpec:
    """How the real-anatomy studies are made: grid, kernel, clot difficulty."""

    pixel_mm: float = 1.2
    slice_thickness: float = 2.5
    kernel: str = "soft"
    difficulty: str = "mixed"


@dataclass
class RealSegStudy:
    """One patient in both phases, for volume-wise scores."""

    case_id: str
    seed: int
    ctpa: Study
    nct: Study

    @property
    def has_pe(self) -> bool:
        return bool((self.ctpa.masks == FINDING_CODES["pe"]).any())


def real_seg_studies(cases_dir: "str | Path", items: Iterable[tuple[str, int, bool]],
                     spec: RealSegSpec = RealSegSpec()) -> list[RealSegStudy]:
    """Paired studies for ``(case_id, seed, pe)`` items."""
    out = []
    for case_id, seed, pe in items:
        options = RealOptions(pe=pe, difficulty=spec.difficulty, kernel=spec.kernel, pixel_mm=spec.pixel_mm,
                              slice_thickness=spec.slice_thickness)
        phases = generate_real_studies(cases_dir, case_id, seed, ("ctpa", "non_contrast"), options)
        out.append(RealSegStudy(case_id, int(seed), phases["ctpa"], phases["non_contrast"]))
        log.info("real-anatomy study %s seed %d (%s): %s", case_id, seed, "PE" if pe else "no PE",
                 out[-1].ctpa.volume.hu.shape)
    return out


def patch_slices(studies: Sequence[RealSegStudy], windows: Sequence[str] = ("vascular", "lung"),
                 patch: int = 64, negatives_per_positive: float = 0.5, seed: int = 0) -> SegSlices:
    """Training patches of both phases (``x`` CTPA, ``nct`` the same pixels without contrast)."""
    from PETriageLib.phantom.anatomy import TISSUES

    rng = np.random.default_rng(seed)
    xs, ncts, masks, patients = [], [], [], []
    for p, st in enumerate(studies):
        clot = st.ctpa.masks == FINDING_CODES["pe"]
        artery = st.ctpa.tissues == TISSUES[ARTERY_TISSUE]
        body = st.ctpa.volume.hu > -500
        centres = []
        for k in np.flatnonzero(clot.any(axis=(1, 2))):
            centres.append((k, *jittered_point(np.argwhere(clot[k]), rng, patch // 4)))
        n_neg = int(round(negatives_per_positive * max(len(centres), 2)))
        free = np.flatnonzero(~clot.any(axis=(1, 2)) & artery.any(axis=(1, 2)))
        for i in range(n_neg):
            if len(free) == 0:
                break
            k = int(rng.choice(free))
            pool = artery[k] if i % 2 == 0 else body[k]
            centres.append((k, *jittered_point(np.argwhere(pool), rng, 0)))
        for k, r, c in centres:
            box = patch_box(clot.shape[1:], r, c, patch)
            xs.append(stack_windows(st.ctpa.volume.hu[k][box][None].astype(np.float32), windows)[0])
            ncts.append(stack_windows(st.nct.volume.hu[k][box][None].astype(np.float32), windows)[0])
            masks.append(clot[k][box][None].astype(np.uint8))
            patients.append(p)
    return SegSlices(np.stack(xs).astype(np.float32), np.stack(masks), np.array(patients),
                     [st.seed for st in studies], tuple(windows), np.stack(ncts).astype(np.float32))


def jittered_point(points: np.ndarray, rng: np.random.Generator, jitter: int) -> tuple[int, int]:
    r, c = points[int(rng.integers(len(points)))]
    if jitter:
        r, c = r + int(rng.integers(-jitter, jitter + 1)), c + int(rng.integers(-jitter, jitter + 1))
    return int(r), int(c)


def patch_box(shape: tuple[int, int], r: int, c: int, patch: int) -> tuple[slice, slice]:
    """A ``patch`` square around (r, c), shifted to lie inside the slice."""
    r0 = int(np.clip(r - patch // 2, 0, max(shape[0] - patch, 0)))
    c0 = int(np.clip(c - patch // 2, 0, max(shape[1] - patch, 0)))
    return slice(r0, r0 + patch), slice(c0, c0 + patch)
