"""Small synthetic CTPA studies on disk, for the suites that need several series."""
from __future__ import annotations

from pathlib import Path


def write_phantom(out: Path, seed: int, pe: bool, slices: int = 24) -> Path:
    from PETriageLib.phantom import generate_study, write_study

    study = generate_study(seed, matrix=128, slices=slices, pe=pe, contrast="ctpa" if pe else None)
    return write_study(study, out)["series_dir"]
