"""Shared pytest fixtures: paths to the real CT data in ../shared/data (skipped when absent), tiny
untrained checkpoints and a small phantom study (CBAMDRN-D-22 at width 0.25, 64 px: every cascade
run takes seconds; tests check structure and logic, not accuracy)."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.checkpoints import make_checkpoint
from support.data_paths import LIDC_SLICE, LUNG_PET_CT_DX, REAL_LABELS, REAL_SERIES
from support.embolus_models import make_embolus_checkpoints



@pytest.fixture(scope="session")
def real_series_dir() -> Path:
    if not REAL_SERIES.is_dir():
        pytest.skip(f"real CT series not available at {REAL_SERIES}")
    return REAL_SERIES


@pytest.fixture(scope="session")
def lung_pet_ct_dx_series_dir() -> Path:
    """A real non-contrast chest CT series of Lung-PET-CT-Dx (A0001, 64 slices at 5 mm)."""
    path = LUNG_PET_CT_DX / "A0001-series2"
    if not path.is_dir():
        pytest.skip(f"real Lung-PET-CT-Dx series not available at {path}")
    return path


@pytest.fixture(scope="session")
def embolus_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny trained segmentation and CPMN checkpoints (support/embolus_models.py)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_embolus_checkpoints(tmp_path_factory.mktemp("embolus"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_labels_csv() -> Path:
    if not REAL_LABELS.is_file():
        pytest.skip(f"real series labels not available at {REAL_LABELS}")
    return REAL_LABELS


@pytest.fixture(scope="session")
def lidc_slice_dir() -> Path:
    if not LIDC_SLICE.is_dir():
        pytest.skip(f"LIDC slice not available at {LIDC_SLICE}")
    return LIDC_SLICE


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


@pytest.fixture
def one_torch_thread_per_test():
    """One intra-op thread for a test (files opt in with usefixtures): on the shared 2-core
    machine, 2 threads under load ran 10-60x slower than 1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
