"""Where the real CT data of ../shared/data lies (PETRIAGE_SHARED_DATA points elsewhere)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("PETRIAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
REAL_SERIES = SHARED_DATA / "real" / "covid-ct-md-cap002"
REAL_LABELS = SHARED_DATA / "real" / "covid-ct-md-cap002.labels.csv"
LIDC_SLICE = SHARED_DATA / "real" / "lidc-slice"
LUNG_PET_CT_DX = SHARED_DATA / "real" / "lung-pet-ct-dx"
CADPE_VESSELS = SHARED_DATA / "real" / "cadpe-vessels"
FUMPE_CLOTS = SHARED_DATA / "real" / "fumpe-clots"
