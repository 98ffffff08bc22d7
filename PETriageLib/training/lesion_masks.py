"""Lesion masks for the auxiliary lesion-map loss, in model space.

A mask is a label volume on the series' own grid (the phantom's ``mask.nrrd``; any NRRD/NIfTI
in the same geometry): 1 = pulmonary embolus, any other non-zero code = other lung disease.
Each slice's mask goes through the same crop and resample as the image, as the fraction of
each model pixel covered by PE and by other disease (uint8, 255 = fully covered).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from PETriageLib.preprocess.slices import CropMap
from PETriageLib.ingest.volume import CTVolume

PE_CODE = 1
CHANNELS = ("pe", "other")


class MaskError(ValueError):
    """The mask does not fit its series; the message says how."""


def read_lesion_mask(path: "str | Path", volume: CTVolume) -> np.ndarray:
    """The label volume as (slices, rows, cols) uint8 in ``volume``'s slice order.

    Slices are matched by position along z (the mask may be stored in either z order); the
    in-plane grid must be the series' own.
    """
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    if arr.ndim != 3 or arr.shape[1:] != volume.hu.shape[1:]:
        raise MaskError(f"{path}: mask of shape {arr.shape} does not match the series' slices "
                        f"{volume.hu.shape[1:]} (resample it onto the series first)")
    origin_xy = np.asarray(img.GetOrigin()[:2], float)
    if np.abs(origin_xy - np.asarray(volume.origin[:2], float)).max() > max(img.GetSpacing()[:2]):
        raise MaskError(f"{path}: mask origin {tuple(origin_xy)} is not the series' {tuple(volume.origin[:2])}")
    mask_z = np.array([img.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(arr.shape[0])])
    series_z = np.asarray(volume.z_positions, float)
    nearest = np.abs(series_z[:, None] - mask_z[None, :]).argmin(axis=1)
    tolerance = 0.25 * float(img.GetSpacing()[2])
    off = np.abs(mask_z[nearest] - series_z)
    if off.max() > tolerance:
        k = int(off.argmax())
        raise MaskError(f"{path}: series slice {k} (z = {series_z[k]:.2f} mm) has no mask slice within "
                        f"{tolerance:.2f} mm")
    return np.ascontiguousarray(arr[nearest]).astype(np.uint8)


def lesion_fractions(mask: np.ndarray, crops: Sequence[CropMap]) -> np.ndarray:
    """(N, 2, S, S) uint8: per model pixel, the covered fraction of PE and of other disease."""
    size = crops[0].size if crops else 0
    out = np.zeros((len(crops), len(CHANNELS), size, size), np.uint8)
    for n, crop in enumerate(crops):
        labels = mask[n]
        for c, hit in enumerate((labels == PE_CODE, (labels != 0) & (labels != PE_CODE))):
            if hit.any():
                frac = crop.to_model(hit.astype(np.float32), fill=0.0)
                out[n, c] = np.clip(np.rint(frac * 255.0), 0, 255).astype(np.uint8)
    return out


def stage_lesion_map(fractions: np.ndarray, stage: int) -> np.ndarray:
    """The map a stage learns to find, in [0, 1]: any lesion for stage 1, PE for stage 2."""
    f = np.asarray(fractions, np.float32) / 255.0
    return f.max(axis=-3) if stage == 1 else f[..., 0, :, :]
