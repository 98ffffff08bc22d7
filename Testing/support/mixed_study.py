"""A study that mixes what a scanner sends: a phantom chest CT, and in the same study an MR image,
a localizer and a corrupt CT instance."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid


def _copy(ds: pydicom.Dataset, path: Path, **changes) -> Path:
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass
class MixedStudy:
    study_uid: str
    ct: list[Path]
    mr: Path
    localizer: Path
    corrupt: Path

    @property
    def files(self) -> list[Path]:
        return [*self.ct, self.mr, self.localizer, self.corrupt]


# Compressed transfer syntaxes scanners send, applied to slices 0-2, 3-5 and 6-8 of the chest CT
COMPRESSED = (RLELossless, JPEGLSLossless, JPEG2000Lossless)


def mixed_study(seed: int, out: Path, compress: bool = False) -> MixedStudy:
    """A phantom chest CT (16 slices, 128 px) plus, in the same study: an MR image, a one-slice coronal
    localizer, and a CT instance of the chest series whose pixel data is cut in half.
    ``compress``: nine of the CT slices RLE, JPEG-LS and JPEG 2000 (lossless) compressed."""
    from pydicom.data import get_testdata_file

    from PETriageLib.phantom import generate_study, write_study

    ct = sorted(write_study(generate_study(seed, matrix=128, slices=16, pe=True), out / "ct")["series_dir"]
                .glob("*.dcm"))
    for n, path in enumerate(ct[:3 * len(COMPRESSED)] if compress else []):
        ds = pydicom.dcmread(path)
        ds.compress(COMPRESSED[n // 3])
        ds.save_as(path, enforce_file_format=True)
    first = pydicom.dcmread(ct[0])
    same = {"StudyInstanceUID": first.StudyInstanceUID, "PatientID": first.PatientID,
            "PatientName": first.PatientName}
    mr = _copy(pydicom.dcmread(get_testdata_file("MR_small.dcm")), out / "mr.dcm", **same,
               SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid())
    localizer = _copy(pydicom.dcmread(ct[0]), out / "localizer.dcm", SeriesInstanceUID=generate_uid(),
                      SOPInstanceUID=generate_uid(), SeriesNumber=2, SeriesDescription="Topogram",
                      ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                      ImageOrientationPatient=["1", "0", "0", "0", "0", "-1"])
    broken = pydicom.dcmread(ct[12])
    corrupt = _copy(broken, out / "corrupt.dcm", SOPInstanceUID=generate_uid(), InstanceNumber=99,
                    PixelData=broken.PixelData[: len(broken.PixelData) // 2])
    return MixedStudy(str(first.StudyInstanceUID), ct, mr, localizer, corrupt)
