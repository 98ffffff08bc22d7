"""Embolus segmentation data from a training manifest (your own labelled series): every source's
``mask`` column (1 = PE, on the series' grid, training/lesion_masks.py) gives the clots.

Training takes square patches at a fixed pixel size (each slice resampled to ``pixel_mm`` as
inference does, models/seg_predict.py): one near a clot pixel of every slice with clot (jittered)
and negatives on random body pixels of slices without clot. Evaluation takes whole series
(``MaskedSeries``), scored as volumes by training/seg_volume_eval.py; each 3D clot component is one
clot, of level "unlabelled" (a manifest mask does not say where in the tree it lies).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.models.seg_predict import model_grid
from PETriageLib.preprocess.windows import stack_windows
from PETriageLib.training.lesion_masks import PE_CODE, read_lesion_mask
from PETriageLib.training.loaders import load_source
from PETriageLib.training.manifest import ManifestError, Source
from PETriageLib.training.seg_data import SegSlices
from PETriageLib.training.seg_real_data import jittered_point, patch_box

log = logging.getLogger(__name__)
UNLABELLED = "unlabelled"


@dataclass
class MaskedSeries:
    """One manifest series with its PE mask, in the shape seg_volume_eval scores."""

    patient_id: str
    volume: CTVolume
    masks: np.ndarray  # uint8 (k, j, i): 1 = PE
    clot_ids: np.ndarray  # uint16: 3D PE components numbered 1..n
    clot_levels: list[str] = field(default_factory=list)
    nct: "CTVolume | None" = None  # the same patient without contrast, on the same grid (seg_manifest_pairs)

    @property
    def has_pe(self) -> bool:
        return bool(self.clot_levels)


def _mask_of(source: Source) -> Path:
    """The source's mask file; a source without one is refused with the patient."""
    if source.kind == "image" or source.mask is None:
        raise ManifestError(f"patient {source.patient_id} ({source.paths[0]}): segmentation training needs "
                            "a mask on the series' grid (the manifest's 'mask' column, 1 = PE)")
    return source.mask


def source_has_pe(source: Source) -> bool:
    """Whether the source's mask holds a PE voxel (code 1, as its clots are counted): the patient's
    PE status for the split and evaluation.json, which a manifest's patient_label may lack or contradict."""
    import SimpleITK as sitk

    return bool((sitk.GetArrayFromImage(sitk.ReadImage(str(_mask_of(source)))) == PE_CODE).any())


def masked_series(sources: Iterable[Source]) -> Iterator[MaskedSeries]:
    """Each source loaded with its PE mask, one at a time (a list of whole series would not fit in
    memory for an archive); a source without a mask, or with one on another grid, is refused with
    the patient and the reason (MaskError names the file)."""
    for source in sources:
        mask = _mask_of(source)
        volume, _ = load_source(source)
        pe = (read_lesion_mask(mask, volume) == PE_CODE).astype(np.uint8)
        ids, n = ndimage.label(pe)
        log.info("segmentation series %s: %s, %d clot component(s)", source.patient_id, volume.hu.shape, n)
        yield MaskedSeries(source.patient_id, volume, pe, ids.astype(np.uint16), [UNLABELLED] * int(n))


def _resampled(x: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """(C, H, W) float32 resampled to ``size`` with torch, as inference resamples."""
    if x.shape[-2:] == size:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(t, size=size, mode=mode, **kwargs)[0].numpy()


def manifest_patches(series: Iterable[MaskedSeries], windows: Sequence[str] = ("vascular", "lung"),
                     patch: int = 64, pixel_mm: float = 1.2, negatives_per_positive: float = 0.5,
                     seed: int = 0) -> SegSlices:
    """Training patches (``x`` and ``mask``) at ``pixel_mm``; for paired series (``MaskedSeries.nct``)
    also the same pixels of the non-contrast scan (``nct``), else ``nct`` None."""
    rng = np.random.default_rng(seed)
    xs, ncts, masks, patients, ids = [], [], [], [], []
    for p, s in enumerate(series):
        ids.append(s.patient_id)
        size = model_grid(s.volume, None, pixel_mm)
        clot_slices = np.flatnonzero(s.masks.any(axis=(1, 2)))
        free = np.flatnonzero(~s.masks.any(axis=(1, 2)))
        n_neg = int(round(negatives_per_positive * max(len(clot_slices), 2)))
        picks = [(int(k), True) for k in clot_slices]
        picks += [(int(rng.choice(free)), False) for _ in range(n_neg if len(free) else 0)]
        for k, positive in picks:
            image = _windowed(s.volume, k, windows, size)
            mask = _resampled(s.masks[k][None].astype(np.float32), size, "nearest")[0] > 0.5
            pool = np.argwhere(mask) if positive and mask.any() else np.argwhere(image[0] > image[0].min())
            if len(pool) == 0:
                continue
            r, c = jittered_point(pool, rng, patch // 4 if positive else 0)
            box = patch_box(size, r, c, patch)
            crop_x, crop_m = image[(slice(None),) + box], mask[box]
            if crop_x.shape[-2:] != (patch, patch):
                raise ManifestError(f"patient {s.patient_id}: slices of {size} px at {pixel_mm} mm are smaller than "
                                    f"the {patch} px patch; use a smaller --patch or --pixel-mm")
            xs.append(crop_x)
            if s.nct is not None:
                ncts.append(_windowed(s.nct, k, windows, size)[(slice(None),) + box])
            masks.append(crop_m[None].astype(np.uint8))
            patients.append(p)
    if not xs or not any(m.any() for m in masks):
        raise ManifestError("the training series hold no PE voxels in their masks: nothing to learn")
    if ncts and len(ncts) != len(xs):
        raise ManifestError("some training series have a non-contrast pair and some do not: give every one a pair "
                            "or none")
    return SegSlices(np.stack(xs).astype(np.float32), np.stack(masks), np.array(patients),
                     list(range(len(ids))), tuple(windows), np.stack(ncts).astype(np.float32) if ncts else None)


def _windowed(volume: CTVolume, k: int, windows: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Slice ``k`` as window channels at the model grid ``size``."""
    return _resampled(stack_windows(volume.hu[k][None].astype(np.float32), windows)[0], size, "bilinear")
