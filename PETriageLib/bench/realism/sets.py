"""The series that the realism measures compare: real CT from the shared data, formula phantoms and
real-anatomy phantoms (each phantom in both phases, so that the contrast-filled arteries are measured
on the same patient as the rest)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import SimpleITK as sitk

from PETriageLib.errors import AnatomyError
from PETriageLib.ingest.load import load_series
from PETriageLib.ingest.volume import CTVolume
from PETriageLib.phantom.anatomy import TISSUES
from PETriageLib.phantom.cases_dir import default_cases_dir
from PETriageLib.phantom.real_study import RealOptions, generate_real_studies
from PETriageLib.phantom.study import generate_study

log = logging.getLogger(__name__)

# real non-contrast chest CT in the shared data: (patient, series folder below real/)
REAL_SERIES = (("cap002", "covid-ct-md-cap002"), ("A0001", "lung-pet-ct-dx/A0001-series2"),
               ("A0001", "lung-pet-ct-dx/A0001-series3"), ("A0002", "lung-pet-ct-dx/A0002-B40f"),
               ("A0002", "lung-pet-ct-dx/A0002-B70f"))
# held back from every training phantom (scripts/real_anatomy_split.json)
DEFAULT_CASES = ("016", "e0042", "e0119", "e0161", "e0200", "e0202")


@dataclass
class Series:
    """One series to measure: its patient, its set (real, formula, real_anatomy), and, for phantoms,
    the artery mask of the contrast phase with the contrast-phase HU."""

    patient: str
    source: str  # "real" | "formula" | "real_anatomy"
    name: str
    volume: CTVolume  # non-contrast
    ctpa_hu: "np.ndarray | None" = None
    artery: "np.ndarray | None" = None


def shared_real_dir() -> Path:
    return default_cases_dir().parent


def real_series(real_dir: "Path | None" = None) -> Iterator[Series]:
    """The real non-contrast series, each read the way triage reads it; a missing folder is an error."""
    real_dir = Path(real_dir) if real_dir else shared_real_dir()
    for patient, rel in REAL_SERIES:
        folder = real_dir / rel
        if not folder.is_dir():
            raise FileNotFoundError(f"real series {folder} not found: the realism measures need ../shared/data/real")
        yield Series(patient, "real", rel, load_series(folder))


def real_contrast_artery(real_dir: "Path | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """(HU, pulmonary artery mask) of the real contrast CT crop (ctpa-crops/pulmonary)."""
    folder = (Path(real_dir) if real_dir else shared_real_dir()) / "ctpa-crops" / "pulmonary"
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "ct_cropped.nii.gz")))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "pulmonary_artery.nii.gz"))) > 0
    if hu.shape != mask.shape or not mask.any():
        raise AnatomyError(f"{folder}: the artery mask is empty or not on the crop's grid")
    return hu, mask


def formula_series(seeds: Sequence[int], slice_thickness: float) -> Iterator[Series]:
    """Formula phantoms without findings; the CTPA rendering of the same seed is another draw of
    anatomy (docs/segmentation.md), used only for the artery HU."""
    for seed in seeds:
        plain = generate_study(int(seed), contrast="none", pe=False, other=False, slice_thickness=slice_thickness)
        ctpa = generate_study(int(seed), contrast="ctpa", pe=False, other=False, slice_thickness=slice_thickness)
        yield Series(f"formula-{seed}", "formula", f"formula seed {seed}", plain.volume, ctpa.volume.hu,
                     ctpa.tissues == TISSUES["artery"])


def real_anatomy_series(cases: Sequence[str], slice_thickness: float, seed: int = 0,
                        cases_dir: "Path | None" = None) -> Iterator[Series]:
    """Real-anatomy phantoms without findings, both phases of the same patient; kernels alternate
    soft / sharp, as the real series have both."""
    folder = Path(cases_dir) if cases_dir else default_cases_dir()
    for n, case in enumerate(cases):
        kernel = "soft" if n % 2 == 0 else "sharp"
        studies = generate_real_studies(folder, case, seed + n, phases=("ctpa", "non_contrast"),
                                        options=RealOptions(pe=False, slice_thickness=slice_thickness, kernel=kernel))
        ctpa = studies["ctpa"]
        yield Series(f"case-{case}", "real_anatomy", f"case {case} ({kernel})", studies["non_contrast"].volume,
                     ctpa.volume.hu, ctpa.tissues == TISSUES["artery"])
