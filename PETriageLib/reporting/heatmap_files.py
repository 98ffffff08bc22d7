"""Heatmap volumes on disk, in the input series' exact geometry (spacing, origin, direction in
LPS), so any viewer overlays them on the CT without resampling."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.reporting.names import safe_name
from PETriageLib.reporting.nrrd_writer import write_nrrd_streamed


def _check_shape(array: np.ndarray, volume: CTVolume) -> None:
    if tuple(array.shape) != tuple(volume.shape):
        raise ValueError(f"heatmap shape {array.shape} differs from the series shape {volume.shape}")


def heatmap_image(array: np.ndarray, volume: CTVolume) -> "Any":
    """A SimpleITK image of ``array`` (k, j, i) carrying the volume's geometry."""
    import SimpleITK as sitk

    _check_shape(array, volume)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    img.SetSpacing([float(x) for x in volume.spacing])
    img.SetOrigin([float(x) for x in volume.origin])
    # SimpleITK's direction is the row-major 3x3 matrix whose columns are the i, j, k axes.
    img.SetDirection([float(x) for x in np.asarray(volume.direction, float).reshape(9)])
    return img


def write_heatmaps(heatmaps: Mapping[str, np.ndarray], volume: CTVolume, out_dir: str | Path,
                   nifti: bool = False) -> list[Path]:
    """heatmap_<branch>.nrrd (or .nii.gz) per branch, gzip-compressed."""
    paths = []
    for branch, array in heatmaps.items():
        path = Path(out_dir) / f"heatmap_{safe_name(branch)}{'.nii.gz' if nifti else '.nrrd'}"
        if nifti:
            import SimpleITK as sitk  # only here: importing it costs about 100 MB of memory

            sitk.WriteImage(heatmap_image(array, volume), str(path), useCompression=True)
        else:  # streamed: no full-volume copies (see nrrd_writer)
            _check_shape(array, volume)
            write_nrrd_streamed(path, array, volume.spacing, volume.origin, volume.direction)
        paths.append(path)
    return paths
