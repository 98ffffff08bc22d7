"""Tiny checkpoints for the tests (the fixtures that use them are in Testing/conftest.py).

Tiny models (CBAMDRN-D-22 at width 0.25, 64 px input) keep every cascade run to seconds; they
are untrained, so tests check structure and logic, not accuracy.
"""
from __future__ import annotations

from pathlib import Path

import torch

from PETriageLib.models import build_model
from PETriageLib.models.checkpoint import save_checkpoint

TINY = {"width": 0.25}


def make_checkpoint(path: Path, stage: int, input_size: int = 64, windows=("vascular", "lung"),
                    threshold: float = 0.5, seed: int = 0) -> Path:
    torch.manual_seed(seed + stage)
    model = build_model("cbamdrn_d22", windows, **TINY)
    classes = ["wnl", "disease"] if stage == 1 else ["other", "pe"]
    return save_checkpoint(path, model, {"input_size": input_size, "class_names": classes, "threshold": threshold,
                                         "training": {"note": "untrained test model"}})
