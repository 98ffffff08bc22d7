"""The embolus probability and mask on disk, on the CT's own grid (the issue #24 contract):
embolus_probability (float32, 0..1) and embolus_mask (uint8 0/1), NRRD or NIfTI; a lesion model's
other classes beside them (other_disease_probability, other_disease_mask)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.reporting.heatmap_files import heatmap_image
from PETriageLib.reporting.nrrd_writer import write_nrrd_streamed
from PETriageLib.triage.embolus import EmbolusResult
from PETriageLib.vocabulary import LESION_TITLES


def write_embolus_files(embolus: EmbolusResult, volume: CTVolume, out_dir: "str | Path",
                        nifti: bool = False) -> list[Path]:
    """Write both maps of the embolus and of every other lesion class into ``out_dir``; an array on
    another grid than the CT is refused, nothing written."""
    from PETriageLib.models.seg_predict import check_on_grid  # torch: only where a mask is written

    results = [embolus, *embolus.others.values()]
    for result in results:
        for what, array in (("probability", result.probability), ("mask", result.mask)):
            check_on_grid(np.asarray(array), volume, f"{LESION_TITLES[result.lesion]} {what}")
    paths = []
    for result in results:
        paths += _write_maps(result, volume, Path(out_dir), nifti)
    return paths


def _write_maps(embolus: EmbolusResult, volume: CTVolume, out_dir: Path, nifti: bool) -> list[Path]:
    arrays = {"probability": np.asarray(embolus.probability, np.float32), "mask": np.asarray(embolus.mask, np.uint8)}
    names = embolus.file_names(nifti)
    paths = []
    for what, array in arrays.items():
        path = Path(out_dir) / names[what]
        if nifti:
            import SimpleITK as sitk

            image = heatmap_image(array, volume)  # float32 with the CT's geometry
            if array.dtype == np.uint8:
                image = sitk.Cast(image, sitk.sitkUInt8)
            sitk.WriteImage(image, str(path), useCompression=True)
        else:
            write_nrrd_streamed(path, array, volume.spacing, volume.origin, volume.direction)
        paths.append(path)
    return paths
