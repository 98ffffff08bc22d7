"""write_study: a phantom as a DICOM CT series (one file per slice), labels CSV, mask NRRD and a JSON summary."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from PETriageLib import __version__
from PETriageLib.vocabulary import SLICE_LABELS
from .findings import FINDING_CODES
from .protocol import seeded_uid
from .study import FLAG_NAMES, Study

IMPLEMENTATION_UID = seeded_uid("petriage-phantom-writer")
LABEL_COLUMNS = ["slice_index", "instance_uid", "z", "label", *FLAG_NAMES]


def _ds(v: float) -> str:
    """Decimal string short enough for DICOM DS (16 chars)."""
    return f"{v:.6f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.6g}"


def _header(study: Study) -> Dataset:
    vol, m = study.volume, study.volume.metadata
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = m["study_date"]
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "120000"
    ds.AccessionNumber = m["accession_number"]
    ds.Modality = "CT"
    ds.Manufacturer = m["manufacturer"]
    ds.ManufacturerModelName = "PETriage synthetic chest CT"
    ds.SoftwareVersions = f"PETriageLib {__version__}"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = m["study_description"]
    ds.SeriesDescription = m["series_description"]
    ds.PatientName = m["patient_name"]
    ds.PatientID = m["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = m["patient_sex"]
    ds.PatientAge = f"{m['patient_age']:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = _ds(m["slice_thickness"])
    ds.SpacingBetweenSlices = _ds(vol.spacing[2])
    ds.KVP = str(m["kvp"])
    ds.XRayTubeCurrent = m["tube_current"]
    ds.ConvolutionKernel = m["kernel"]
    ds.PatientPosition = "HFS"
    if m["contrast_agent"]:
        ds.ContrastBolusAgent = m["contrast_agent"]
        ds.ContrastBolusRoute = "IV"
    ds.StudyInstanceUID = m["study_uid"]
    ds.SeriesInstanceUID = m["series_uid"]
    ds.FrameOfReferenceUID = m["frame_of_reference_uid"]
    ds.PositionReferenceIndicator = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds(v) for v in np.asarray(vol.direction)[:, :2].T.ravel()]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = vol.hu.shape[1], vol.hu.shape[2]
    ds.PixelSpacing = [_ds(vol.spacing[1]), _ds(vol.spacing[0])]  # row spacing, column spacing
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = ("100", "700") if m["contrast_agent"] else ("40", "400")
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.ImageComments = f"Synthetic phantom (PETriage seed {study.seed}); not a patient"
    return ds


def write_series(study: Study, series_dir: Path) -> list[Path]:
    """One DICOM file per slice, named IM0001.dcm... in ascending z."""
    series_dir.mkdir(parents=True, exist_ok=True)
    vol = study.volume
    base = _header(study)
    ijk = vol.ijk_to_lps
    paths = []
    for k in range(vol.num_slices):
        ds = Dataset()
        ds.update(base)
        uid = vol.instance_uids[k]
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = k + 1
        pos = ijk @ np.array([0.0, 0.0, k, 1.0])
        ds.ImagePositionPatient = [_ds(v) for v in pos[:3]]
        ds.SliceLocation = _ds(float(vol.z_positions[k]))
        ds.PixelData = (vol.hu[k].astype(np.int32) + 1024).clip(0, 4095).astype("<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = IMPLEMENTATION_UID
        meta.ImplementationVersionName = "PETRIAGE_" + __version__.replace(".", "")
        ds.file_meta = meta
        ds.preamble = b"\0" * 128
        path = series_dir / f"IM{k + 1:04d}.dcm"
        save_as_file_format(ds, path)
        paths.append(path)
    return paths


def save_as_file_format(ds: Dataset, path: Path) -> None:
    """Write a DICOM Part 10 file (preamble, meta header) with pydicom 3 or 2.4 (Slicer 5.10 bundles 2.4.4)."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2: the same file through the argument 3.0 renamed
        ds.save_as(path, write_like_original=False)


def write_labels(study: Study, path: Path) -> None:
    vol = study.volume
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(LABEL_COLUMNS)
        for k in range(vol.num_slices):
            w.writerow([k, vol.instance_uids[k], f"{vol.z_positions[k]:.4f}", study.slice_labels[k],
                        *(int(study.slice_flags[n][k]) for n in FLAG_NAMES)])


def write_mask(study: Study, path: Path) -> None:
    """The finding label volume (FINDING_CODES) in the series geometry."""
    img = sitk.GetImageFromArray(study.masks)
    vol = study.volume
    img.SetSpacing([float(v) for v in vol.spacing])
    img.SetOrigin([float(v) for v in vol.origin])
    img.SetDirection([float(v) for v in np.asarray(vol.direction).ravel()])
    sitk.WriteImage(img, str(path), True)


def write_study(study: Study, out_dir: "str | Path") -> dict[str, Path]:
    """Write series/ (DICOM), labels.csv, mask.nrrd and study.json into out_dir; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"series_dir": out / "series", "labels_csv": out / "labels.csv", "mask": out / "mask.nrrd",
             "summary": out / "study.json"}
    write_series(study, paths["series_dir"])
    write_labels(study, paths["labels_csv"])
    write_mask(study, paths["mask"])
    summary = {
        "seed": study.seed, "patient_id": study.volume.metadata["patient_id"],
        "patient_label": study.patient_label, "contrast": "ctpa" if study.volume.metadata["contrast_agent"] else "none",
        "findings": [{"kind": f.kind, **f.detail} for f in study.findings],
        "slice_counts": {lab: study.slice_labels.count(lab) for lab in SLICE_LABELS},
        "mask_codes": FINDING_CODES, "options": study.options,
        "shape": list(study.volume.hu.shape), "spacing": list(study.volume.spacing),
    }
    paths["summary"].write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return paths
