"""The source series of a result as DICOM headers, and what every PETriage DICOM object shares
(equipment, series numbers, the disclaimer)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from PETriageLib import __version__
from PETriageLib.errors import PETriageError
from PETriageLib.ingest.volume import CTVolume

MANUFACTURER = "PETriage"
MODEL_NAME = "PETriageLib"
SOFTWARE_VERSION = f"PETriageLib {__version__}"
DEVICE_SERIAL = "0"  # software, not a device: the attribute is required, the value says none
DISCLAIMER = ("Research software, not a medical device: PETriage results are not a diagnosis and must not "
              "be used for clinical decisions.")
# Series numbers of the objects PETriage adds to a study; high, to sort after the scanner's series.
SERIES_NUMBERS = {"sr": 9901, "key_images": 9902, "heatmaps": 9903}


@dataclass(frozen=True)
class SourceSeries:
    """The headers (no pixel data) of the triaged series, one per slice in the volume's slice order."""

    datasets: list[Dataset]

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)


def read_source(volume: CTVolume) -> SourceSeries:
    """Read the headers of ``volume.file_paths``; an instance without a SOPInstanceUID cannot be referenced."""
    if len(volume.file_paths) != volume.num_slices:
        raise PETriageError(f"the volume lists {len(volume.file_paths)} files for {volume.num_slices} slices; "
                            "DICOM results need the source file of every slice")
    datasets = []
    for path in volume.file_paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if not ds.get("SOPInstanceUID") or not ds.get("StudyInstanceUID"):
            raise PETriageError(f"{Path(path).name}: no SOPInstanceUID/StudyInstanceUID; "
                                "DICOM results cannot reference it")
        datasets.append(ds)
    return SourceSeries(datasets)
