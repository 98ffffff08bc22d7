"""Bad input gets a clear message naming the file and the problem, never a crash or a silent wrong volume."""
from __future__ import annotations

import pydicom
import pytest
from support.dicom_factory import chest_hu, make_dataset, write_file, write_series
from pydicom.uid import MPEG2MPML, JPEGLosslessSV1

from PETriageLib.ingest.load import load_series, scan_series
from PETriageLib.errors import SeriesError


@pytest.fixture
def series(tmp_path):
    """A good 5-slice axial series; returns (folder, file paths in slice order)."""
    folder = tmp_path / "series"
    return folder, write_series(folder, chest_hu(5, 32, 32))


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(SeriesError, match="no such file or folder"):
        load_series(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeriesError, match="empty, no files found"):
        load_series(tmp_path / "empty")
    with pytest.raises(SeriesError, match=r"a\.dcm: no such file or folder"):
        load_series([tmp_path / "a.dcm"])


def test_only_non_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n" + bytes(200))
    with pytest.raises(SeriesError, match=r"no readable DICOM image files among 2 file\(s\).*skipped 2 non-DICOM"):
        load_series(tmp_path)


def test_non_dicom_files_are_skipped_with_a_count(series):
    folder, _ = series
    (folder / "README.txt").write_text("not dicom")
    (folder / "DICOMDIR.json").write_text("{}")
    v = load_series(folder)
    assert v.num_slices == 5
    assert any("skipped 2 non-DICOM (or non-image DICOM) file(s)" in w for w in v.warnings)
    assert any("skipped 2 non-DICOM" in w for w in scan_series(folder)[0].warnings)


def test_truncated_pixel_data_names_the_file(series):
    folder, paths = series
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 700])
    with pytest.raises(SeriesError, match=rf"{paths[2].name}: PixelData holds 1348 bytes; Rows 32 x Columns 32 x "
                                          r"BitsAllocated 16 need 2048"):
        load_series(folder)


def test_truncated_header_is_reported(series):
    folder, paths = series
    paths[1].write_bytes(paths[1].read_bytes()[:300])
    v = load_series(folder)  # the other four load; the hole and the broken file are both reported
    assert v.num_slices == 4
    assert any(paths[1].name in w and "unreadable DICOM file" in w for w in v.warnings)
    assert any("missing slices" in w for w in v.warnings)
    only = paths[1].parent / "only"
    only.mkdir()
    (only / "x.dcm").write_bytes(paths[1].read_bytes())
    with pytest.raises(SeriesError, match=r"x\.dcm: unreadable DICOM file"):
        load_series(only)


def test_single_slice_loads_with_a_warning(tmp_path):
    write_series(tmp_path, chest_hu(1, 32, 32), slice_thickness=3.0)
    v = load_series(tmp_path)
    assert v.hu.shape == (1, 32, 32) and v.spacing[2] == 3.0
    assert any("a single slice, not a volume" in w and "slice0000.dcm" in w for w in v.warnings)


def test_mixed_series_need_a_choice(tmp_path):
    write_series(tmp_path / "a", chest_hu(3, 32, 32), series_uid="1.2.3.1")
    write_series(tmp_path / "b", chest_hu(2, 32, 32), series_uid="1.2.3.2")
    with pytest.raises(SeriesError, match=r"2 series mixed in one input.*1\.2\.3\.1 \(3 files.*1\.2\.3\.2 \(2 files"):
        load_series(tmp_path)
    assert load_series(tmp_path, series_uid="1.2.3.2").num_slices == 2
    with pytest.raises(SeriesError, match="series 9.9 not found"):
        load_series(tmp_path, series_uid="9.9")


def test_missing_position_is_an_error(series):
    folder, paths = series
    ds = pydicom.dcmread(paths[3])
    del ds.ImagePositionPatient
    ds.save_as(paths[3])
    with pytest.raises(SeriesError, match=rf"missing ImagePositionPatient in 1 file\(s\): .*{paths[3].name}"):
        load_series(folder)


def test_non_axial_series_loads_and_says_so(tmp_path):
    sagittal = (0, 1, 0, 0, 0, -1)
    write_series(tmp_path, chest_hu(3, 32, 32), orientation=sagittal)
    v = load_series(tmp_path)
    assert not v.is_axial
    assert any("not an axial series" in w and "triage needs axial" in w for w in v.warnings)


@pytest.mark.parametrize("modality, message", [("MR", "modality MR, not CT"),
                                               ("OT", "secondary-capture image")])
def test_not_ct_is_an_error(tmp_path, modality, message):
    write_series(tmp_path, chest_hu(2, 32, 32), modality=modality)
    with pytest.raises(SeriesError, match=rf"slice0000\.dcm: {message}"):
        load_series(tmp_path)
    assert any(message in w for w in scan_series(tmp_path)[0].warnings)


def test_unsupported_compressed_syntax_names_file_and_syntax(series):
    folder, paths = series
    ds = pydicom.dcmread(paths[0])
    ds.compress("1.2.840.10008.1.2.5")  # RLE data ...
    ds.file_meta.TransferSyntaxUID = MPEG2MPML  # ... declared as a video syntax nobody decodes here
    ds.save_as(paths[0])
    with pytest.raises(SeriesError, match=rf"{paths[0].name}: cannot decode pixel data \(MPEG2"):
        load_series(folder)


def test_corrupt_compressed_data_names_file(series):
    folder, paths = series
    ds = pydicom.dcmread(paths[1])
    ds.compress("1.2.840.10008.1.2.5")
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1  # RLE bytes are not a JPEG stream
    ds.save_as(paths[1])
    with pytest.raises(SeriesError, match=rf"{paths[1].name}: cannot decode pixel data \(JPEG Lossless"):
        load_series(folder)


def test_mixed_sizes_and_orientations_are_errors(tmp_path):
    paths = write_series(tmp_path / "size", chest_hu(3, 32, 32), series_uid="1.2.9")
    small = make_dataset(chest_hu(1, 24, 24)[0], position=(0, 0, 50), orientation=(1, 0, 0, 0, 1, 0), series_uid="1.2.9")
    write_file(small, paths[0].parent / "odd.dcm")
    with pytest.raises(SeriesError, match=r"mixed image sizes \[\(24, 24\), \(32, 32\)\]"):
        load_series(tmp_path / "size")
    paths = write_series(tmp_path / "ori", chest_hu(3, 32, 32), series_uid="1.2.8")
    tilted = make_dataset(chest_hu(1, 32, 32)[0], position=(0, 0, 50), orientation=(0, 1, 0, 0, 0, -1), series_uid="1.2.8")
    write_file(tilted, paths[0].parent / "scout.dcm")
    with pytest.raises(SeriesError, match=r"mixed orientations: 1 of 4 file\(s\).*scout\.dcm"):
        load_series(tmp_path / "ori")


def test_error_reaches_user_without_traceback(tmp_path, caplog):
    from PETriageLib.cli import main
    (tmp_path / "empty").mkdir()
    assert main(["info", str(tmp_path / "empty")]) == 2  # no DICOM at all: exit 2, as documented
    assert "empty, no files found" in caplog.text and "Traceback" not in caplog.text
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)  # a damaged DICOM file
    assert main(["info", str(tmp_path / "bad.dcm")]) == 2
    assert "bad.dcm" in caplog.text and "Traceback" not in caplog.text
