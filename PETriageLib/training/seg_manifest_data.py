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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.vocabulary import LESION_TITLES
from PETriageLib.models.seg_predict import model_grid
from PETriageLib.preprocess.windows import stack_windows
from PETriageLib.training.lesion_masks import PE_CODE, read_lesion_mask
from PETriageLib.training.loaders import load_source
from PETriageLib.training.manifest import ManifestError, Source
from PETriageLib.training.seg_data import SegSlices
from PETriageLib.training.seg_real_data import jittered_point, patch_box

log = logging.getLogger(__name__)
UNLABELLED = "unlabelled"


OTHER_LEVEL = "other disease"  # the "level" of every other-disease lesion component in the tables


@dataclass
class MaskedSeries:
    """One manifest series with its PE mask, in the shape seg_volume_eval scores (``for_class``
    gives the same for another lesion class)."""

    patient_id: str
    volume: CTVolume
    masks: np.ndarray  # uint8 (k, j, i): 1 = PE
    clot_ids: np.ndarray  # uint16: 3D PE components numbered 1..n
    clot_levels: list[str] = field(default_factory=list)
    nct: "CTVolume | None" = None  # the same patient without contrast, on the same grid (seg_manifest_pairs)
    labels: "np.ndarray | None" = None  # uint8 (k, j, i): the mask's own codes (1 = PE, others = other disease)

    @property
    def has_pe(self) -> bool:
        return bool(self.clot_levels)

    def class_mask(self, lesion: str) -> np.ndarray:
        """uint8 (k, j, i) 0/1 mask of one lesion class (vocabulary.LESION_CLASSES)."""
        if lesion == "pe":
            return self.masks
        if lesion != "other":
            raise ValueError(f"unknown lesion class {lesion!r}")
        if self.labels is None:
            raise ValueError(f"patient {self.patient_id}: the series was loaded without its mask's codes")
        return ((self.labels != 0) & (self.labels != PE_CODE)).astype(np.uint8)

    def for_class(self, lesion: str) -> "MaskedSeries":
        """This series scored for ``lesion``: its mask, 3D components and their level name."""
        if lesion == "pe":
            return self
        mask = self.class_mask(lesion)
        ids, n = ndimage.label(mask)
        return replace(self, masks=mask, clot_ids=ids.astype(np.uint16), clot_levels=[OTHER_LEVEL] * int(n))


def _mask_of(source: Source) -> Path:
    """The source's mask file; a source without one is refused with the patient."""
    if source.kind == "image" or source.mask is None:
        raise ManifestError(f"patient {source.patient_id} ({source.paths[0]}): segmentation training needs "
                            "a mask on the series' grid (the manifest's 'mask' column, 1 = PE)")
    return source.mask


def mask_classes(source: Source) -> frozenset[str]:
    """The lesion classes the source's mask holds a voxel of ("pe" for code 1, "other" for any
    other code): the patient's status for the split and evaluation.json, which a manifest's
    patient_label may lack or contradict."""
    import SimpleITK as sitk

    codes = sitk.GetArrayFromImage(sitk.ReadImage(str(_mask_of(source))))
    pe = codes == PE_CODE
    return frozenset(({"pe"} if pe.any() else set()) | ({"other"} if ((codes != 0) & ~pe).any() else set()))


def masked_series(sources: Iterable[Source]) -> Iterator[MaskedSeries]:
    """Each source loaded with its PE mask, one at a time (a list of whole series would not fit in
    memory for an archive); a source without a mask, or with one on another grid, is refused with
    the patient and the reason (MaskError names the file)."""
    for source in sources:
        mask = _mask_of(source)
        volume, _ = load_source(source)
        labels = read_lesion_mask(mask, volume)
        pe = (labels == PE_CODE).astype(np.uint8)
        ids, n = ndimage.label(pe)
        log.info("segmentation series %s: %s, %d clot component(s)", source.patient_id, volume.hu.shape, n)
        yield MaskedSeries(source.patient_id, volume, pe, ids.astype(np.uint16), [UNLABELLED] * int(n), labels=labels)


def _resampled(x: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """(C, H, W) float32 resampled to ``size`` with torch, as inference resamples."""
    if x.shape[-2:] == size:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(t, size=size, mode=mode, **kwargs)[0].numpy()


def manifest_patches(series: Iterable[MaskedSeries], windows: Sequence[str] = ("vascular", "lung"),
                     patch: int = 64, pixel_mm: float = 1.2, negatives_per_positive: float = 0.5,
                     seed: int = 0, classes: Sequence[str] = ("pe",)) -> SegSlices:
    """Training patches (``x`` and ``mask``, one mask channel per lesion class of ``classes``) at
    ``pixel_mm``: one near a lesion pixel of every slice with a lesion of those classes, negatives on
    slices without; for paired series (``MaskedSeries.nct``) also the same pixels of the
    non-contrast scan (``nct``), else ``nct`` None."""
    rng = np.random.default_rng(seed)
    xs, ncts, masks, patients, ids = [], [], [], [], []
    for p, s in enumerate(series):
        ids.append(s.patient_id)
        size = model_grid(s.volume, None, pixel_mm)
        lesions = np.stack([s.class_mask(c) for c in classes])  # (K, k, j, i)
        clot_slices = np.flatnonzero(lesions.any(axis=(0, 2, 3)))
        free = np.flatnonzero(~lesions.any(axis=(0, 2, 3)))
        n_neg = int(round(negatives_per_positive * max(len(clot_slices), 2)))
        picks = [(int(k), True) for k in clot_slices]
        picks += [(int(rng.choice(free)), False) for _ in range(n_neg if len(free) else 0)]
        for k, positive in picks:
            image = _windowed(s.volume, k, windows, size)
            mask = _resampled(lesions[:, k].astype(np.float32), size, "nearest") > 0.5  # (K, rows, cols)
            hit = mask.any(axis=0)
            pool = np.argwhere(hit) if positive and hit.any() else np.argwhere(image[0] > image[0].min())
            if len(pool) == 0:
                continue
            r, c = jittered_point(pool, rng, patch // 4 if positive else 0)
            box = patch_box(size, r, c, patch)
            crop_x, crop_m = image[(slice(None),) + box], mask[(slice(None),) + box]
            if crop_x.shape[-2:] != (patch, patch):
                raise ManifestError(f"patient {s.patient_id}: slices of {size} px at {pixel_mm} mm are smaller than "
                                    f"the {patch} px patch; use a smaller --patch or --pixel-mm")
            xs.append(crop_x)
            if s.nct is not None:
                ncts.append(_windowed(s.nct, k, windows, size)[(slice(None),) + box])
            masks.append(crop_m.astype(np.uint8))
            patients.append(p)
    if not xs or not any(m.any() for m in masks):
        raise ManifestError(f"the training series hold no {' or '.join(LESION_TITLES[c] for c in classes)} voxels "
                            "in their masks: nothing to learn")
    empty = [c for n, c in enumerate(classes) if not any(m[n].any() for m in masks)]
    if empty:
        raise ManifestError(f"no training patch holds {', '.join(LESION_TITLES[c] for c in empty)}: that class "
                            "cannot be learnt from these masks")
    if ncts and len(ncts) != len(xs):
        raise ManifestError("some training series have a non-contrast pair and some do not: give every one a pair "
                            "or none")
    return SegSlices(np.stack(xs).astype(np.float32), np.stack(masks), np.array(patients),
                     list(range(len(ids))), tuple(windows), np.stack(ncts).astype(np.float32) if ncts else None)


def _windowed(volume: CTVolume, k: int, windows: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    """Slice ``k`` as window channels at the model grid ``size``."""
    return _resampled(stack_windows(volume.hu[k][None].astype(np.float32), windows)[0], size, "bilinear")
