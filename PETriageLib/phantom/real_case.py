"""A real case as phantom anatomy: artery, vein and lung masks of a CAD-PE scan on its own grid.

Files per case ID: ID.nii.gz (1 = artery, 2 = vein) and ID_lungmask.nii.gz (non-zero = lung).
Both are read with SimpleITK, turned to LPS index order (so the array is (k, j, i) with +i patient
left, +j posterior, +k superior) and checked: present, readable, same geometry, not empty.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from PETriageLib.errors import AnatomyError

ARTERY, VEIN = 1, 2


@dataclass(frozen=True)
class RealCase:
    """Masks (bool, (k, j, i)) and geometry (LPS mm, SimpleITK order x, y, z) of one case."""

    case_id: str
    artery: np.ndarray
    vein: np.ndarray
    lung: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.lung.shape)  # type: ignore[return-value]

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS coordinates (mm) of the voxel centres along i (x), j (y), k (z)."""
        return tuple(o + s * np.arange(n) for o, s, n in
                     zip(self.origin, self.spacing, self.shape[::-1]))  # type: ignore[return-value]


def case_paths(folder: "str | Path", case_id: str) -> tuple[Path, Path]:
    folder = Path(folder)
    return folder / f"{case_id}.nii.gz", folder / f"{case_id}_lungmask.nii.gz"


def _read(path: Path, what: str) -> sitk.Image:
    if not path.is_file():
        raise AnatomyError(f"{path}: the {what} is missing")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise AnatomyError(f"{path}: the {what} cannot be read ({str(exc).strip().splitlines()[-1]})") from None
    if img.GetDimension() != 3:
        raise AnatomyError(f"{path}: the {what} is not a 3-D image")
    return sitk.DICOMOrient(img, "LPS")


def _same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-3)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-2)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4))


def load_case(folder: "str | Path", case_id: str) -> RealCase:
    """Read and check one case; every refusal is an AnatomyError naming the file and the reason."""
    vessel_path, lung_path = case_paths(folder, case_id)
    vessels_img = _read(vessel_path, "artery/vein mask")
    lung_img = _read(lung_path, "lung mask")
    if not _same_geometry(vessels_img, lung_img):
        raise AnatomyError(f"{lung_path}: the lung mask's geometry (size {lung_img.GetSize()}, spacing "
                           f"{np.round(lung_img.GetSpacing(), 3).tolist()}) differs from {vessel_path.name} "
                           f"(size {vessels_img.GetSize()}, spacing {np.round(vessels_img.GetSpacing(), 3).tolist()})")
    if not np.allclose(np.abs(np.asarray(lung_img.GetDirection()).reshape(3, 3)), np.eye(3), atol=1e-3):
        raise AnatomyError(f"{lung_path}: the masks are not axial (direction {lung_img.GetDirection()})")
    vessels = sitk.GetArrayFromImage(vessels_img)
    lung = sitk.GetArrayFromImage(lung_img) > 0
    artery, vein = vessels == ARTERY, vessels == VEIN
    for mask, path, what in ((lung, lung_path, "lung mask"), (artery, vessel_path, "artery label (1)"),
                             (vein, vessel_path, "vein label (2)")):
        if not mask.any():
            raise AnatomyError(f"{path}: the {what} is empty")
    return RealCase(case_id=case_id, artery=artery, vein=vein, lung=lung,
                    spacing=tuple(float(v) for v in lung_img.GetSpacing()),  # type: ignore[arg-type]
                    origin=tuple(float(v) for v in lung_img.GetOrigin()),  # type: ignore[arg-type]
                    source=str(Path(folder) / case_id))


def resample_case(case: RealCase, pixel_mm: "float | None" = None, thickness_mm: "float | None" = None) -> RealCase:
    """The case on a coarser (or finer) grid: masks by nearest neighbour, same field of view.

    thickness_mm: slice spacing (0.6-5 mm); pixel_mm: in-plane spacing (smaller matrices for tests).
    """
    if thickness_mm is not None and not 0.6 <= thickness_mm <= 5.0:
        raise AnatomyError(f"slice thickness must lie in 0.6-5 mm, got {thickness_mm}")
    sx, sy, sz = case.spacing
    new = (pixel_mm or sx, pixel_mm or sy, thickness_mm or sz)
    if np.allclose(new, case.spacing):
        return case
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(case.shape[::-1], case.spacing, new)]
    # keep the first voxel's edge where it was, so the field of view is the same
    origin = [o - s / 2 + t / 2 for o, s, t in zip(case.origin, case.spacing, new)]
    labels = (case.artery * ARTERY + case.vein * VEIN + case.lung * 4).astype(np.uint8)
    img = sitk.GetImageFromArray(labels)
    img.SetSpacing(case.spacing)
    img.SetOrigin(case.origin)
    out = sitk.Resample(img, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin, new, np.eye(3).ravel().tolist(),
                        0, sitk.sitkUInt8)
    arr = sitk.GetArrayFromImage(out)
    return replace(case, artery=(arr & 3) == ARTERY, vein=(arr & 3) == VEIN, lung=(arr & 4) > 0,
                   spacing=tuple(float(v) for v in new), origin=tuple(float(v) for v in origin))
