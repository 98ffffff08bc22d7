"""Turn a manifest Source into a CTVolume plus one label per slice (ascending z)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from PETriageLib.errors import SeriesError
from PETriageLib.training.manifest import Source, read_slice_labels
from PETriageLib.ingest.volume import AIR_HU, CTVolume
from PETriageLib.preprocess.windows import Window

log = logging.getLogger(__name__)
# 8-bit slice images (e.g. COVIDx-CT) were saved through a display window; map grey back to HU through it.
DEFAULT_IMAGE_WINDOW = Window("image", -600.0, 1500.0)
DEFAULT_IMAGE_SPACING_MM = 0.7


def _volume_from_file(path: Path) -> CTVolume:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise SeriesError(f"cannot read volume {path}: {exc}") from exc
    hu = sitk.GetArrayFromImage(img)
    if hu.ndim != 3:
        raise SeriesError(f"{path}: expected a 3D scalar volume, got array shape {hu.shape}")
    hu = np.maximum(hu, AIR_HU).astype(np.int16 if np.issubdtype(hu.dtype, np.integer) else np.float32)
    direction = np.asarray(img.GetDirection(), float).reshape(3, 3)
    origin = np.asarray(img.GetOrigin(), float)
    normal_step = direction[:, 2] * img.GetSpacing()[2]
    z = np.array([float(np.dot(origin + k * normal_step, direction[:, 2])) for k in range(hu.shape[0])])
    uids = [f"{path.name}#{k}" for k in range(hu.shape[0])]
    return CTVolume(hu=hu, spacing=tuple(img.GetSpacing()), origin=tuple(origin), direction=direction,
                    z_positions=z, instance_uids=uids, file_paths=[str(path)] * hu.shape[0],
                    metadata={"modality": "CT", "series_description": path.name})


def _volume_from_images(paths: list[Path], window: Window, spacing_mm: float) -> CTVolume:
    from PIL import Image

    slices = []
    for p in paths:
        try:
            grey = np.asarray(Image.open(p).convert("L"), np.float32)
        except OSError as exc:
            raise SeriesError(f"cannot read image {p}: {exc}") from exc
        if slices and grey.shape != slices[0].shape:
            raise SeriesError(f"{p}: size {grey.shape} differs from the patient's other images {slices[0].shape}")
        slices.append(grey)
    hu = (window.low + np.stack(slices) / 255.0 * window.width).astype(np.float32)
    n = len(paths)
    return CTVolume(hu=np.maximum(hu, AIR_HU), spacing=(spacing_mm, spacing_mm, 1.0), origin=(0.0, 0.0, 0.0),
                    direction=np.eye(3), z_positions=np.arange(n, dtype=float),
                    instance_uids=[p.name for p in paths], file_paths=[str(p) for p in paths],
                    metadata={"modality": "CT"})


def load_source(source: Source) -> "tuple[CTVolume, list[str]]":
    """Load a Source; raises SeriesError (unreadable images) or ManifestError (labels)."""
    if source.kind == "image":
        volume = _volume_from_images(source.paths, DEFAULT_IMAGE_WINDOW, DEFAULT_IMAGE_SPACING_MM)
        return volume, list(source.image_labels)
    if source.kind == "volume":
        volume = _volume_from_file(source.paths[0])
    else:
        from PETriageLib.ingest.load import load_series

        volume = load_series(source.paths[0])
    assert source.labels_csv is not None
    labels = read_slice_labels(source.labels_csv, list(volume.instance_uids), list(volume.file_paths))
    return volume, labels
