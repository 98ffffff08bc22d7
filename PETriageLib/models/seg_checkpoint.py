"""Segmentation and cross-phase checkpoints: the same file format, digest and strict load as the
classifiers' (models/checkpoint.py), with metadata that says the task, windows and input size."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from PETriageLib.errors import CheckpointError
from PETriageLib.models.checkpoint import load_checkpoint, save_checkpoint
from PETriageLib.models.seg_base import SEG_CLASS_NAMES, SegmentationNet


def save_seg_checkpoint(path: "str | os.PathLike", model: SegmentationNet, input_size: int,
                        threshold: float = 0.5, training: "Mapping[str, Any] | None" = None,
                        pixel_mm: "float | None" = None, min_component_ml: float = 0.0) -> Path:
    """Write ``model`` with task, windows, input size and the pixel threshold in its metadata.

    ``pixel_mm``: the pixel size it was trained at (inference resamples slices to it);
    ``min_component_ml``: predicted components smaller than this are dropped (the operating point)."""
    if not isinstance(model, SegmentationNet):
        raise ValueError(f"{type(model).__name__} is not a segmentation model")
    meta = {"task": model.task, "input_size": int(input_size), "class_names": list(SEG_CLASS_NAMES),
            "threshold": float(threshold), "training": dict(training or {}),
            "pixel_mm": None if pixel_mm is None else float(pixel_mm), "min_component_ml": float(min_component_ml)}
    return save_checkpoint(path, model, meta)


def load_seg_checkpoint(path: "str | os.PathLike", expected_sha256: "str | None" = None,
                        map_location: str = "cpu") -> tuple[SegmentationNet, dict]:
    """Load a segmentation or cross-phase checkpoint; a classifier's file is refused by name."""
    model, meta = load_checkpoint(path, expected_sha256, map_location)
    if not isinstance(model, SegmentationNet) or meta.get("task") != model.task:
        raise CheckpointError(f"checkpoint {path} holds a {meta.get('task', 'classification')} model "
                              f"({meta['architecture']}), not an embolus segmentation model")
    return model, meta
