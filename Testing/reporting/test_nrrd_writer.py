"""The streamed NRRD writer: SimpleITK reads back the exact voxels and geometry, oblique included."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from PETriageLib.reporting.nrrd_writer import write_nrrd_streamed


def _rotation(deg_x: float, deg_z: float) -> np.ndarray:
    ax, az = np.radians(deg_x), np.radians(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


@pytest.mark.parametrize("direction", [np.eye(3), _rotation(25.0, -10.0)], ids=["axial", "oblique"])
def test_streamed_nrrd_reads_back_exactly(tmp_path, direction):
    rng = np.random.default_rng(0)
    array = np.zeros((7, 5, 9), np.float32)  # (k, j, i), deliberately non-square
    array[2] = rng.random((5, 9), dtype=np.float32)
    array[5, 1, 3] = 0.75
    spacing, origin = (0.63, 0.71, 2.5), (-160.2, -170.9, -303.5)
    path = write_nrrd_streamed(tmp_path / "h.nrrd", array, spacing, origin, direction)

    img = sitk.ReadImage(str(path))
    assert img.GetSize() == (9, 5, 7)
    assert img.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(img.GetSpacing(), spacing, rtol=0, atol=1e-9)
    np.testing.assert_allclose(img.GetOrigin(), origin, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), direction, atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), array)
    # a voxel index maps to the same physical point as the geometry says
    expected = np.asarray(origin) + direction @ (np.array([3, 1, 5]) * np.asarray(spacing))
    np.testing.assert_allclose(img.TransformIndexToPhysicalPoint((3, 1, 5)), expected, atol=1e-6)


def test_streamed_nrrd_refuses_non_3d(tmp_path):
    with pytest.raises(ValueError, match="3D"):
        write_nrrd_streamed(tmp_path / "x.nrrd", np.zeros((4, 4), np.float32), (1, 1, 1), (0, 0, 0), np.eye(3))


@pytest.mark.parametrize("nonzero", [[], [0], [39], [3, 4, 20], list(range(40))], ids=str)
def test_zero_slices_reused_still_one_exact_gzip_stream(tmp_path, nonzero):
    """All-zero slices are written as reused compressed bytes: gzip (one member, CRC and length
    checked by the module) and SimpleITK still read back exactly the array, wherever they fall."""
    import gzip

    rng = np.random.default_rng(1)
    array = np.zeros((40, 24, 36), np.float32)
    for k in nonzero:
        array[k] = rng.random((24, 36), dtype=np.float32) * (rng.random((24, 36)) > 0.5)
    path = write_nrrd_streamed(tmp_path / "z.nrrd", array, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    raw = path.read_bytes()
    body = raw[raw.index(b"\n\n") + 2:]
    assert gzip.decompress(body) == array.astype("<f4").tobytes()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), array)
