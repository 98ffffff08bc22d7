"""Segmentation and cross-phase checkpoints: the same file format, digest and strict load as the
classifiers' (models/checkpoint.py), with metadata that says the task, windows and input size."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from PETriageLib.errors import CheckpointError
from PETriageLib.models.checkpoint import load_checkpoint, save_checkpoint
from PETriageLib.models.seg_base import DEFAULT_CLASSES, SEG_CLASS_NAMES, SegmentationNet


def save_seg_checkpoint(path: "str | os.PathLike", model: SegmentationNet, input_size: int,
                        threshold: float = 0.5, training: "Mapping[str, Any] | None" = None,
                        pixel_mm: "float | None" = None, min_component_ml: float = 0.0,
                        class_points: "Mapping[str, tuple[float, float]] | None" = None) -> Path:
    """Write ``model`` with task, windows, input size and the pixel threshold in its metadata.

    ``pixel_mm``: the pixel size it was trained at (inference resamples slices to it);
    ``min_component_ml``: predicted components smaller than this are dropped (the operating point of
    its first class: the embolus, which triage uses). ``class_points``: (threshold, minimum component
    mL) of the model's other lesion classes, for a model with more than one."""
    if not isinstance(model, SegmentationNet):
        raise ValueError(f"{type(model).__name__} is not a segmentation model")
    points = {model.classes[0]: (float(threshold), float(min_component_ml))}
    for lesion, (t, m) in (class_points or {}).items():
        model.channel(lesion)  # a class the model lacks is refused
        points.setdefault(lesion, (float(t), float(m)))
    missing = [c for c in model.classes if c not in points]
    if missing:
        raise ValueError(f"no operating point for lesion class(es) {missing} of {model.name}")
    meta = {"task": model.task, "input_size": int(input_size), "class_names": list(SEG_CLASS_NAMES),
            "threshold": float(threshold), "training": dict(training or {}),
            "pixel_mm": None if pixel_mm is None else float(pixel_mm), "min_component_ml": float(min_component_ml),
            "lesion_classes": list(model.classes),
            "class_points": {c: {"threshold": points[c][0], "min_component_ml": points[c][1]} for c in model.classes}}
    return save_checkpoint(path, model, meta)


def class_point(meta: Mapping[str, Any], lesion: str) -> tuple[float, float]:
    """(threshold, minimum component mL) of one lesion class of a checkpoint's ``meta`` (a file from
    before lesion classes: its one point, for the embolus)."""
    points = meta.get("class_points") or {DEFAULT_CLASSES[0]: {"threshold": meta["threshold"],
                                                                "min_component_ml": meta.get("min_component_ml") or 0.0}}
    if lesion not in points:
        raise ValueError(f"the checkpoint has no operating point for {lesion!r} (its classes: {sorted(points)})")
    return float(points[lesion]["threshold"]), float(points[lesion]["min_component_ml"] or 0.0)


def load_seg_checkpoint(path: "str | os.PathLike", expected_sha256: "str | None" = None,
                        map_location: str = "cpu") -> tuple[SegmentationNet, dict]:
    """Load a segmentation or cross-phase checkpoint; a classifier's file is refused by name."""
    model, meta = load_checkpoint(path, expected_sha256, map_location)
    if not isinstance(model, SegmentationNet) or meta.get("task") != model.task:
        raise CheckpointError(f"checkpoint {path} holds a {meta.get('task', 'classification')} model "
                              f"({meta['architecture']}), not an embolus segmentation model")
    return model, meta
