"""Embolus (and other lesion) probability on a CT's own grid, and clot volume from a mask.

The model sees each axial slice windowed as it was trained (its windows), resized to its input size
when one is given, and its per-pixel probabilities are resized back: the result has the shape of
``volume.hu`` and so the CT's geometry (spacing, origin, direction), ready to write beside it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from PETriageLib.errors import NotAnalysableError
from PETriageLib.ingest.volume import CTVolume
from PETriageLib.models.seg_base import SegmentationNet
from PETriageLib.preprocess.windows import stack_windows


def check_on_grid(array: np.ndarray, volume: CTVolume, what: str = "mask") -> None:
    """Refuse an array that is not on the CT's voxel grid (NotAnalysableError with both shapes)."""
    if tuple(np.shape(array)) != tuple(volume.hu.shape):
        raise NotAnalysableError(f"the {what} has shape {tuple(np.shape(array))} (k, j, i) but the CT "
                                 f"{volume.metadata.get('series_uid', '')} has {tuple(volume.hu.shape)}: "
                                 "it belongs to another geometry")


def predict_embolus_probability(model: SegmentationNet, volume: CTVolume, input_size: "int | None" = None,
                                windows: "Sequence | None" = None, batch_size: int = 8,
                                pixel_mm: "float | None" = None) -> np.ndarray:
    """Per-voxel embolus probability, float32 of ``volume.hu.shape`` (k, j, i), values in [0, 1].

    ``pixel_mm``: the pixel size the model was trained at (the checkpoint's ``pixel_mm``); each slice
    is resampled to it, so a clot is as many pixels wide as in training. Else ``input_size``: a square
    side to resize to. Neither: the native slice size. ``windows``: the checkpoint's window dicts
    (default: the model's names). A model that does not segment emboli is refused (ValueError).
    """
    return predict_lesion_probabilities(model, volume, input_size, windows, batch_size, pixel_mm, ("pe",))["pe"]


@torch.no_grad()
def predict_lesion_probabilities(model: SegmentationNet, volume: CTVolume, input_size: "int | None" = None,
                                 windows: "Sequence | None" = None, batch_size: int = 8,
                                 pixel_mm: "float | None" = None,
                                 lesions: "Sequence[str] | None" = None) -> dict[str, np.ndarray]:
    """Per-voxel probability of each lesion class in ``lesions`` (default: every class the model
    segments), each float32 of ``volume.hu.shape``; arguments as ``predict_embolus_probability``."""
    if not isinstance(model, SegmentationNet):
        raise ValueError(f"{type(model).__name__} is not a segmentation model")
    lesions = tuple(lesions or model.classes)
    channels = [model.channel(c) for c in lesions]
    windows = list(windows or model.windows)
    if len(windows) * model.slices_per_window != model.in_channels:
        raise ValueError(f"{len(windows)} windows given for a model of {model.in_channels} input channels")
    device = next(model.parameters()).device
    model.eval()
    hu = volume.hu
    rows, cols = hu.shape[1:]
    size = model_grid(volume, input_size, pixel_mm)
    out = {c: np.empty(hu.shape, np.float32) for c in lesions}
    for start in range(0, hu.shape[0], batch_size):
        chunk = hu[start : start + batch_size].astype(np.float32)
        x = torch.from_numpy(stack_windows(chunk, windows).astype(np.float32)).to(device)
        if size != (rows, cols):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        prob = torch.sigmoid(model(x).float()[:, channels])
        if prob.shape[-2:] != (rows, cols):
            prob = F.interpolate(prob, size=(rows, cols), mode="bilinear", align_corners=False)
        prob = prob.clamp_(0, 1).cpu().numpy()
        for n, c in enumerate(lesions):
            out[c][start : start + len(chunk)] = prob[:, n]
    return out


def model_grid(volume: CTVolume, input_size: "int | None", pixel_mm: "float | None") -> tuple[int, int]:
    """The (rows, columns) a slice is resampled to before the model sees it."""
    rows, cols = volume.hu.shape[1:]
    if pixel_mm:
        col_mm, row_mm = float(volume.spacing[0]), float(volume.spacing[1])
        return max(16, round(rows * row_mm / pixel_mm)), max(16, round(cols * col_mm / pixel_mm))
    if input_size:
        return int(input_size), int(input_size)
    return int(rows), int(cols)


def clot_volume_ml(mask: np.ndarray, volume: CTVolume) -> float:
    """Volume of the voxels set in ``mask`` (on the CT's grid), in millilitres."""
    check_on_grid(mask, volume)
    voxel_mm3 = float(np.prod([float(s) for s in volume.spacing]))
    return float(np.count_nonzero(mask)) * voxel_mm3 / 1000.0
