"""Training slices for embolus segmentation from phantom studies, single phase or CTPA/NCT pairs.

Pairs: ``generate_study(seed, contrast="none")`` is NOT the same patient as ``contrast="ctpa"`` with the
same seed (the contrast choice changes the random draws, so anatomy, grid and masks differ; and a PE
study cannot be rendered without contrast). The NCT rendering is therefore made from the CTPA study
itself (``nct_rendering``): every contrast-enhanced tissue of the tissue map (pulmonary arteries,
aorta, veins, heart blood, myocardium) keeps its noise and texture but loses its enhancement (its
core level, 75th percentile, minus the native HU; partial-volume voxels the share they carry), and the clot voxels to native blood + ``CLOT_EXCESS_HU`` (acute clot is a
little denser than blood on NCT). Geometry and masks are then identical by construction. The blur of
bright contrast into the voxels next to a vessel is not undone: a known limit of this rendering.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.phantom import FINDING_CODES, Study, generate_study
from PETriageLib.phantom.anatomy import TISSUES
from PETriageLib.preprocess.windows import stack_windows

log = logging.getLogger(__name__)

NATIVE_HU = {"artery": 42.0, "aorta": 42.0, "vein": 42.0, "blood": 42.0, "myocardium": 48.0}
CLOT_EXCESS_HU = 15.0
ENHANCED_PERCENTILE = 75.0  # an enhanced tissue's core level (its distal, partial-volume voxels lie below)
SURROUNDING_HU = -100.0  # what an enhanced voxel shares its volume with in the mediastinum: fat


@dataclass
class SegSlices:
    """Axial slices with their embolus masks; ``nct`` only for cross-phase pairs."""

    x: np.ndarray  # float32 (N, C, H, W) window channels (CTPA, or the only phase)
    mask: np.ndarray  # uint8 (N, K, H, W): one 0/1 channel per lesion class (K = 1: the embolus)
    patient: np.ndarray  # int (N,) index into ``seeds``
    seeds: list[int]
    windows: tuple[str, ...]
    nct: "np.ndarray | None" = None  # float32 (N, C, H, W): the same slices without contrast

    def __len__(self) -> int:
        return int(self.x.shape[0])


def without_enhancement(hu: np.ndarray, native: float) -> np.ndarray:
    """One enhanced tissue's voxels without their contrast. The tissue's enhanced level is its
    ``ENHANCED_PERCENTILE``; each voxel loses the share of the enhancement its partial volume
    carries, ``(hu - SURROUNDING_HU) / (level - SURROUNDING_HU)`` clipped to [0, 1]. A uniform shift
    of the median left the large vessels bright: the median is pulled down by the thin, partly
    aerated distal arteries, and the trunk stayed at ~160 HU (measured as contrast)."""
    level = float(np.percentile(hu, ENHANCED_PERCENTILE))
    if level <= SURROUNDING_HU:
        return hu - float(np.median(hu)) + native
    share = np.clip((hu - SURROUNDING_HU) / (level - SURROUNDING_HU), 0.0, 1.0)
    return hu - share * (level - native)


def nct_rendering(study: Study) -> CTVolume:
    """The study's CT as it would look without contrast, on the same grid (see the module text)."""
    hu = study.volume.hu.astype(np.float32)
    out = hu.copy()
    clot = study.masks == FINDING_CODES["pe"]
    for name, native in NATIVE_HU.items():
        sel = (study.tissues == TISSUES[name]) & ~clot
        if sel.any():
            out[sel] = without_enhancement(hu[sel], native)
    if clot.any():
        out[clot] = hu[clot] - float(np.median(hu[clot])) + NATIVE_HU["blood"] + CLOT_EXCESS_HU
    meta = {**study.volume.metadata, "contrast_agent": None, "series_description": "Chest without contrast "
            "(rendered from the CTPA phantom)"}
    return replace(study.volume, hu=np.rint(np.clip(out, -1024, 3071)).astype(np.int16), metadata=meta)


def phantom_seg_slices(seeds: Sequence[int], windows: Sequence[str] = ("vascular", "lung"), matrix: int = 96,
                       slices: int = 24, negatives_per_study: int = 2, pairs: bool = False,
                       difficulty: str = "easy", crop: "int | None" = None,
                       negative_seeds: Sequence[int] = ()) -> SegSlices:
    """Every slice with embolus voxels of PE phantoms ``seeds``, plus ``negatives_per_study`` without.

    ``pairs``: add the NCT rendering of the same slices (``nct``), for cross-phase training.
    ``crop``: keep the central ``crop`` x ``crop`` pixels (the mediastinum and hila, where central and
    lobar emboli lie), so CPU runs stay small. ``negative_seeds``: studies without PE (CTPA), whose
    ``negatives_per_study`` slices give the patient specificity something to count."""
    xs, ncts, masks, patients = [], [], [], []
    all_seeds = [(int(s), True) for s in seeds] + [(int(s), False) for s in negative_seeds]
    for p, (seed, pe) in enumerate(all_seeds):
        study = generate_study(seed, matrix=matrix, slices=slices, pe=pe, difficulty=difficulty,
                               contrast="ctpa")
        clot = (study.masks == FINDING_CODES["pe"]).astype(np.uint8)
        positive = np.flatnonzero(clot.any(axis=(1, 2)))
        negative = np.flatnonzero(~clot.any(axis=(1, 2)))
        picks = np.concatenate([positive, negative[np.linspace(0, len(negative) - 1, negatives_per_study,
                                                               dtype=int)] if len(negative) else []]).astype(int)
        box = _central(clot.shape[1:], crop)
        xs.append(stack_windows(study.volume.hu[picks][box].astype(np.float32), windows))
        if pairs:
            ncts.append(stack_windows(nct_rendering(study).hu[picks][box].astype(np.float32), windows))
        masks.append(clot[picks][box][:, None])
        patients.append(np.full(len(picks), p))
        log.debug("seed %d: %d embolus slices, %d negatives", seed, len(positive), len(picks) - len(positive))
    return SegSlices(np.concatenate(xs).astype(np.float32), np.concatenate(masks), np.concatenate(patients),
                     [s for s, _ in all_seeds], tuple(windows),
                     np.concatenate(ncts).astype(np.float32) if pairs else None)


def _central(shape: tuple[int, int], crop: "int | None") -> tuple[slice, slice, slice]:
    if not crop or crop >= min(shape):
        return (slice(None), slice(None), slice(None))
    r0, c0 = (shape[0] - crop) // 2, (shape[1] - crop) // 2
    return (slice(None), slice(r0, r0 + crop), slice(c0, c0 + crop))
