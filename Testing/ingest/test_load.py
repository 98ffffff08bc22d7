"""Series ingest: order, HU and geometry equal to SimpleITK's ImageSeriesReader, on real and synthetic series."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from support.dicom_factory import chest_hu, oblique_orientation, write_series

from PETriageLib.ingest.load import load_series, scan_series
from PETriageLib.errors import SeriesError


def sitk_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_same_as_sitk(volume, folder: Path) -> None:
    image = sitk_series(folder)
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(volume.direction).ravel(), image.GetDirection(), atol=1e-9)
    np.testing.assert_array_equal(volume.hu, sitk.GetArrayFromImage(image))


@pytest.fixture(scope="module")
def real_volume(real_series_dir):
    return load_series(real_series_dir)


def test_real_series_matches_simpleitk(real_volume, real_series_dir):
    v = real_volume
    assert v.hu.shape == (131, 512, 512) and v.hu.dtype == np.int16
    assert v.spacing == pytest.approx((0.630859375, 0.630859375, 2.0))
    assert v.is_axial
    assert_same_as_sitk(v, real_series_dir)
    assert v.hu.min() == -1024


def test_real_series_order_follows_position_not_names(real_volume, real_labels_csv):
    # the dataset's labels list the files in ascending SliceLocation (feet to head)
    with open(real_labels_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(p).name for p in real_volume.file_paths] == [r["file"] for r in rows]
    np.testing.assert_allclose(real_volume.z_positions, [float(r["slice_location"]) for r in rows], atol=1e-6)
    assert np.all(np.diff(real_volume.z_positions) > 0)


def test_real_series_ids_and_metadata(real_volume, real_series_dir):
    v = real_volume
    assert len(set(v.instance_uids)) == 131 and all(u.startswith("2.25.") for u in v.instance_uids)
    assert load_series(sorted(real_series_dir.glob("*.dcm"))[:3]).instance_uids[0] in v.instance_uids  # stable
    assert any("SOPInstanceUID" in w for w in v.warnings)
    assert any("not a valid DICOM UID" in w for w in v.warnings)
    m = v.metadata
    assert m["series_uid"] == "7afb0d48-ec01-4941-9a58-66d15cab76fb"
    assert (m["patient_id"], m["modality"], m["kernel"], m["manufacturer"]) == ("cap002", "CT", "D40s", "SIEMENS")
    assert m["contrast_agent"] is None and m["slice_thickness"] == 2.0
    assert m["transfer_syntax"] == "1.2.840.10008.1.2.4.70"


@pytest.mark.parametrize("options", [
    {},
    {"shuffle": True},
    {"shuffle": True, "orientation": oblique_orientation(25.0)},
    {"compression": "rle"},
    {"compression": "j2k", "shuffle": True},
    {"signed": True, "intercept": 0.0},
], ids=["axial", "shuffled", "oblique", "rle", "j2k", "signed"])
def test_synthetic_series_exact(tmp_path, options):
    hu = chest_hu(6, 48, 64, seed=3)
    write_series(tmp_path, hu, spacing=(0.8, 0.6, 2.5), origin=(-20.0, -15.0, 40.0), **options)
    v = load_series(tmp_path)
    np.testing.assert_array_equal(v.hu, hu)  # order and HU exact
    assert v.spacing == pytest.approx((0.8, 0.6, 2.5))
    assert v.origin == pytest.approx((-20.0, -15.0, 40.0))
    assert_same_as_sitk(v, tmp_path)
    assert v.is_axial == ("orientation" not in options)


def test_oblique_geometry_places_voxels_on_file_positions(tmp_path):
    orientation = oblique_orientation(30.0)
    paths = write_series(tmp_path, chest_hu(4, 32, 32), orientation=orientation, shuffle=True)
    v = load_series(tmp_path)
    assert any("not an axial series" in w for w in v.warnings)
    import pydicom
    for k, path in enumerate(paths):
        ipp = np.asarray(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient, float)
        np.testing.assert_allclose((v.ijk_to_lps @ [0, 0, k, 1])[:3], ipp, atol=1e-6)
    ras = v.ijk_to_ras @ [0, 0, 0, 1]
    assert ras[:3] == pytest.approx([-v.origin[0], -v.origin[1], v.origin[2]])


def test_float_rescale_gives_float32(tmp_path):
    hu = chest_hu(3, 32, 32)
    write_series(tmp_path, hu, slope=0.5, intercept=-1000.0, signed=True)
    v = load_series(tmp_path)
    assert v.hu.dtype == np.float32
    np.testing.assert_array_equal(v.hu, np.maximum(hu, -1024).astype(np.float32))


def test_padding_never_below_air(tmp_path):
    hu = chest_hu(3, 32, 32).astype(np.int32)
    hu[:, :4, :] = -2048  # outside the field of view, as in LIDC
    write_series(tmp_path / "a", hu, signed=True, intercept=0.0)
    assert load_series(tmp_path / "a").hu[:, :4].max() == -1024
    hu[:, :4, :] = -1000  # stored 24 with intercept -1024: declared as PixelPaddingValue
    write_series(tmp_path / "b", hu, padding_value=24)
    v = load_series(tmp_path / "b")
    assert v.hu[:, :4].max() == -1024 and v.hu.min() == -1024


def test_gaps_and_duplicates(tmp_path):
    hu = chest_hu(5, 32, 32, seed=1)
    write_series(tmp_path / "gap", hu, positions=[0, 2, 4, 10, 12])
    v = load_series(tmp_path / "gap")
    assert v.z_positions - v.z_positions[0] == pytest.approx([0, 2, 4, 10, 12])
    assert any("missing slices: gap of 6.00 mm" in w and "slice0002.dcm" in w for w in v.warnings)
    same = hu.copy()
    same[2] = same[1]
    write_series(tmp_path / "dup", same, positions=[0, 2, 2, 4, 6])
    v = load_series(tmp_path / "dup")
    assert v.num_slices == 4 and any("duplicate slice position -98.00 mm: slice0001.dcm and slice0002.dcm" in w for w in v.warnings)
    write_series(tmp_path / "clash", hu, positions=[0, 2, 2, 4, 6])
    with pytest.raises(SeriesError, match="same position .* different pixels"):
        load_series(tmp_path / "clash")


def test_lidc_slice_stored_twice(lidc_slice_dir):
    v = load_series(lidc_slice_dir)
    assert v.hu.shape == (2, 512, 512) and v.hu.min() == -1024  # -2048 padding clipped
    assert any("no Modality tag" in w for w in v.warnings)
    assert any("identical pixels" in w and "0.dcm" in w and "1.dcm" in w for w in v.warnings)


def test_scan_lists_series_largest_first(tmp_path):
    write_series(tmp_path / "s1", chest_hu(5, 32, 32), shuffle=True)
    write_series(tmp_path / "s2", chest_hu(3, 24, 24))
    infos = scan_series(tmp_path)
    assert [(s.num_slices, s.rows, s.cols, s.modality) for s in infos] == [(5, 32, 32, "CT"), (3, 24, 24, "CT")]
    v = load_series(tmp_path, series_uid=infos[1].uid)
    assert v.num_slices == 3 and v.file_paths == infos[1].files
    ticks = []
    load_series(tmp_path, series_uid=infos[0].uid, progress=lambda done, total, _step: ticks.append((done, total)))
    assert ticks[-1] == (5, 5)
