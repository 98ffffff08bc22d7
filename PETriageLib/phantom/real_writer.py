"""write_real_studies: each phase as write_study does, plus the anatomy masks it was built on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .anatomy import TISSUES
from .study import Study
from .writer import write_study


def _write_label(study: Study, array: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(array.astype(np.uint8))
    vol = study.volume
    img.SetSpacing([float(v) for v in vol.spacing])
    img.SetOrigin([float(v) for v in vol.origin])
    img.SetDirection([float(v) for v in np.asarray(vol.direction).ravel()])
    sitk.WriteImage(img, str(path), True)


def write_real_studies(studies: "dict[str, Study]", out_dir: "str | Path") -> dict[str, dict[str, Path]]:
    """out_dir/<phase>/ holds series/, labels.csv, mask.nrrd, study.json, vessels.nrrd (1 artery, 2 vein)
    and lung.nrrd; both phases share the masks, so they are the same files in each folder."""
    out = {}
    for phase, study in studies.items():
        paths = write_study(study, Path(out_dir) / phase)
        t = study.tissues
        vessels = (t == TISSUES["artery"]) * 1 + (t == TISSUES["vein"]) * 2
        paths["vessels"] = paths["series_dir"].parent / "vessels.nrrd"
        paths["lung"] = paths["series_dir"].parent / "lung.nrrd"
        _write_label(study, vessels, paths["vessels"])
        _write_label(study, t == TISSUES["lung"], paths["lung"])
        out[phase] = paths
    return out
