"""Write small synthetic DICOM CT series with pydicom, for tests (other suites may import it).

``chest_hu`` draws a crude chest (body ellipse, two air-filled lungs, a spine, a table); ``write_series``
stores any HU array as a series with chosen geometry, names, compression and header defects.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, MRImageStorage, RLELossless,
                         SecondaryCaptureImageStorage, generate_uid)

COMPRESSIONS = {"rle": RLELossless, "j2k": JPEG2000Lossless}
if TYPE_CHECKING:
    from PETriageLib.ingest.volume import CTVolume

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage, "OT": SecondaryCaptureImageStorage}


def chest_hu(slices: int = 8, rows: int = 96, cols: int = 96, lung_slices: Sequence[int] | None = None,
             seed: int = 0) -> np.ndarray:
    """int16 HU volume (k, j, i): air, a soft-tissue body with fat rim, two lungs (on ``lung_slices``,
    default all), a vertebra and a table under the patient. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    jj, ii = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, cx = rows * 0.48, cols / 2
    body = ((ii - cx) / (cols * 0.42)) ** 2 + ((jj - cy) / (rows * 0.32)) ** 2 <= 1
    inner = ((ii - cx) / (cols * 0.38)) ** 2 + ((jj - cy) / (rows * 0.28)) ** 2 <= 1
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lungs |= ((ii - cx - side * cols * 0.18) / (cols * 0.13)) ** 2 + ((jj - cy) / (rows * 0.2)) ** 2 <= 1
    spine = ((ii - cx) ** 2 + (jj - cy - rows * 0.2) ** 2) <= (rows * 0.05) ** 2
    table = (jj >= rows * 0.86) & (jj < rows * 0.9)
    lung_set = set(range(slices)) if lung_slices is None else set(lung_slices)
    vol = np.full((slices, rows, cols), -1000, np.int16)
    for k in range(slices):
        img = np.full((rows, cols), -1000, np.float32)
        img[body] = -100  # fat
        img[inner] = 40  # muscle / mediastinum
        if k in lung_set:
            img[lungs] = -850
        img[spine] = 700
        img[table] = 200
        img += rng.normal(0, 5, img.shape)
        vol[k] = np.round(img).astype(np.int16)
    return vol


def ct_volume(hu: np.ndarray, spacing: Sequence[float] = (0.8, 0.8, 2.0), **metadata) -> "CTVolume":
    """An axial CTVolume around an HU array, without DICOM files (for lung crop and preprocess tests)."""
    from PETriageLib.ingest.volume import CTVolume

    return CTVolume(hu=hu, spacing=tuple(spacing), origin=(0.0, 0.0, 0.0), direction=np.eye(3),
                    z_positions=np.arange(hu.shape[0]) * float(spacing[2]),
                    instance_uids=[str(k) for k in range(hu.shape[0])], metadata={"modality": "CT", **metadata})


def _orientation_axes(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    return row, col, np.cross(row, col)


def oblique_orientation(degrees: float = 20.0) -> tuple[float, ...]:
    """Axial orientation rotated about the patient's left-right axis (a tilted acquisition)."""
    t = np.deg2rad(degrees)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))


def make_dataset(hu: np.ndarray, *, position: Sequence[float] | None, orientation: Sequence[float] | None,
                 pixel_spacing: Sequence[float] = (0.7, 0.7), modality: str | None = "CT", series_uid: str = "",
                 study_uid: str = "", sop_uid: str | None = None, instance_number: int = 1,
                 slope: float = 1.0, intercept: float = -1024.0, signed: bool = False,
                 padding_value: int | None = None, slice_thickness: float = 2.0) -> FileDataset:
    """One CT image dataset storing ``hu`` as (hu - intercept) / slope."""
    stored = np.round((np.asarray(hu, np.float64) - intercept) / slope)
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    stored = np.clip(stored, info.min, info.max).astype(dtype)
    sop_class = SOP_CLASSES.get(modality or "CT", CTImageStorage)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid if sop_uid is not None else meta.MediaStorageSOPInstanceUID
    if modality:
        ds.Modality = modality
    ds.PatientID, ds.PatientName = "PHANTOM01", "Phantom^Test"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), series_uid or generate_uid()
    ds.StudyDate, ds.StudyDescription, ds.SeriesDescription = "20260101", "CT CHEST", "synthetic axial"
    ds.Manufacturer, ds.ConvolutionKernel, ds.BodyPartExamined = "PETriage factory", "B30f", "CHEST"
    ds.InstanceNumber = instance_number
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = slice_thickness
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if padding_value is not None:
        ds.PixelPaddingValue = int(padding_value)
    ds.PixelData = stored.tobytes()
    return ds


def write_series(out_dir: "str | Path", hu: np.ndarray, *, spacing: Sequence[float] = (0.7, 0.7, 2.5),
                 origin: Sequence[float] = (-30.0, -40.0, -100.0),
                 orientation: Sequence[float] = (1, 0, 0, 0, 1, 0), shuffle: bool = False,
                 compression: str | None = None, names: Callable[[int], str] | None = None,
                 positions: Sequence[float] | None = None, series_uid: str | None = None,
                 study_uid: str | None = None, empty_sop_uid: bool = False, seed: int = 0,
                 **dataset_options) -> list[Path]:
    """Write ``hu`` (k, j, i) as one series; returns the file paths in slice (k) order.

    ``spacing`` is (col mm, row mm, slice mm) like CTVolume; slice k sits at origin + k * spacing
    along the slice normal, or at ``positions[k]`` mm along it when given (gaps, duplicates).
    ``shuffle`` gives file names unrelated to the order; ``compression`` is "rle" or "j2k".
    Extra keywords go to ``make_dataset`` (modality, slope, intercept, padding_value, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    row, col, normal = _orientation_axes(orientation)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    order = list(range(hu.shape[0]))
    if shuffle:
        random.Random(seed).shuffle(order)
    paths = []
    for k in range(hu.shape[0]):
        z = positions[k] if positions is not None else k * spacing[2]
        pos = np.asarray(origin, float) + z * normal
        ds = make_dataset(hu[k], position=pos, orientation=orientation, pixel_spacing=(spacing[1], spacing[0]),
                          series_uid=series_uid, study_uid=study_uid, instance_number=order[k] + 1,
                          sop_uid="" if empty_sop_uid else None, **dataset_options)
        if compression:
            ds.compress(COMPRESSIONS[compression])
        name = names(k) if names else (f"IMG{order[k]:04d}.dcm" if shuffle else f"slice{k:04d}.dcm")
        path = out / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_file(ds: pydicom.Dataset, path: "str | Path") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
