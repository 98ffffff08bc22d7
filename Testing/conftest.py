"""Shared pytest fixtures: paths to the real CT data in ../shared/data (skipped when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PETRIAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
REAL_SERIES = SHARED_DATA / "real" / "covid-ct-md-cap002"
REAL_LABELS = SHARED_DATA / "real" / "covid-ct-md-cap002.labels.csv"
LIDC_SLICE = SHARED_DATA / "real" / "lidc-slice"


@pytest.fixture(scope="session")
def real_series_dir() -> Path:
    if not REAL_SERIES.is_dir():
        pytest.skip(f"real CT series not available at {REAL_SERIES}")
    return REAL_SERIES


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
