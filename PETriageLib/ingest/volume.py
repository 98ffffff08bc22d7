"""CTVolume: the one object that carries a loaded CT series through the pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from PETriageLib.ingest.limits import is_axial

# DICOM/ITK use LPS patient coordinates; Slicer uses RAS. Flip x and y to convert.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
AIR_HU = -1024  # what padding and anything below air become


@dataclass
class CTVolume:
    """A CT series as a Hounsfield-unit array plus the geometry that places it in the patient.

    Array order is (slices, rows, cols) = (k, j, i). Geometry follows SimpleITK (LPS):
    ``spacing`` is (i, j, k) = (column spacing, row spacing, slice spacing) in mm,
    ``origin`` is the LPS position of voxel (i, j, k) = (0, 0, 0), and ``direction`` is a
    3x3 matrix whose columns are the LPS unit vectors of the i, j and k axes.
    Slices are in ascending position along the slice normal (k axis).
    """

    hu: np.ndarray  # (k, j, i); int16 when rescale is exact, else float32; padding -> -1024
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray  # 3x3, columns = i, j, k axis directions in LPS
    z_positions: np.ndarray  # (k,) position of each slice along the slice normal, mm
    instance_uids: list[str]  # SOPInstanceUID per slice, or a stable surrogate where empty
    file_paths: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # patient/study/series ids, date, ...
    warnings: list[str] = field(default_factory=list)
    # found at ingest, each also a warning: lost slices, gantry tilt, implausible pixels; the gate
    # (triage.eligibility.series_problem) refuses a volume that has any
    defects: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def num_slices(self) -> int:
        return int(self.hu.shape[0])

    @property
    def ijk_to_lps(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = np.asarray(self.direction, float) @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    @property
    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix Slicer's vtkMRMLVolumeNode.SetIJKToRASMatrix expects."""
        m = self.ijk_to_lps
        m[:3, :] = LPS_TO_RAS @ m[:3, :]
        return m

    @property
    def is_axial(self) -> bool:
        """True when the slice normal is within ~10 degrees of the patient's S-I axis."""
        return is_axial(np.asarray(self.direction, float)[:, 2])
