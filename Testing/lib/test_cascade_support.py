"""Shared fixtures of the triage tests (no tests here): tiny checkpoints and a small phantom.

Tiny models (CBAMDRN-D-22 at width 0.25, 64 px input) keep every cascade run to seconds; they
are untrained, so tests check structure and logic, not accuracy.
"""
from __future__ import annotations

from pathlib import Path

import pytest
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


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    return make_checkpoint(d / "stage1.pt", 1), make_checkpoint(d / "stage2.pt", 2)


@pytest.fixture(scope="session")
def phantom_study():
    from PETriageLib.phantom import generate_study

    return generate_study(3, matrix=128, slices=16, pe=True)


@pytest.fixture(scope="session")
def phantom_series_dir(phantom_study, tmp_path_factory) -> Path:
    from PETriageLib.phantom import write_study

    return write_study(phantom_study, tmp_path_factory.mktemp("phantom"))["series_dir"]
