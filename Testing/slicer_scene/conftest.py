"""Fixtures for the Slicer scene logic on a real MRML scene (PyPI slicer-core, no Qt, no app).

Studies come from the phantom generator (small: 128 x 128, ~24 slices) and models are tiny
random-weight cascade stages saved as real checkpoints, so a full triage takes seconds.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.phantoms import write_phantom

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("this 'slicer' module has no MRML (slicer-core missing)", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "PETriage"))


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, extra threads spin against each other (30x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def scene():
    from PETriageSlicer.scene import new_scene

    return new_scene()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[str, str]:
    """Stage 1 (threshold 0: every lung slice goes on to stage 2) and stage 2 checkpoints."""
    import torch

    from PETriageLib.models import build_model, save_checkpoint

    out = tmp_path_factory.mktemp("models")
    paths = []
    for stage, classes, threshold in ((1, ["wnl", "disease"], 0.0), (2, ["other", "pe"], 0.5)):
        torch.manual_seed(stage)
        model = build_model("cbamdrn_d22", ("vascular", "lung"), width=0.25)
        meta = {"class_names": classes, "input_size": 64, "threshold": threshold}
        paths.append(str(save_checkpoint(out / f"stage{stage}.pt", model, meta)))
    return paths[0], paths[1]


@pytest.fixture(scope="session")
def phantom_series(tmp_path_factory) -> Path:
    """A small synthetic CTPA study with PE: its DICOM series folder (labels.csv beside it)."""
    return write_phantom(tmp_path_factory.mktemp("phantom") / "pe_study", seed=3, pe=True)
