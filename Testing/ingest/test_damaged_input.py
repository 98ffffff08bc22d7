"""Each failure kind of issue #25 on its own: damaged headers, decoders, geometry and pixels are
refused (SeriesError) or made defects the gate refuses, the message naming the file and the tag."""
from __future__ import annotations

import logging
import random
import warnings

import numpy as np
import pytest
from support.dicom_factory import chest_hu, write_series
from support.fuzz_series import (copy_real_subset, rewrite, set_raw, write_bad_rle_table, write_corrupt_compressed,
                                 write_every_other_unreadable,
                                 write_good, write_ipp_nan, write_pixel_garbage, write_tilted)

from PETriageLib.errors import SeriesError
from PETriageLib.ingest.load import load_series
from PETriageLib.triage.eligibility import series_problem


def _refusal(folder) -> str:
    volume = load_series(folder)
    problem = series_problem(volume)
    assert problem is not None, volume.warnings
    return problem


@pytest.mark.parametrize("keyword, vr, value, message", [
    ("RescaleSlope", "LO", "abc", r"RescaleSlope 'abc' is not a number"),
    ("RescaleSlope", "DS", "1\\2", r"RescaleSlope .* has 2 value\(s\), 1 expected"),
    ("RescaleSlope", "DS", "0", r"RescaleSlope .* is outside \(0, 1000.0\]"),
    ("RescaleIntercept", "DS", "1e10", r"RescaleIntercept .* is outside \[-100000.0, 100000.0\]"),
    ("RescaleIntercept", "DS", "nan", r"RescaleIntercept .* is not finite"),
    ("PixelSpacing", "DS", "0\\0.7", r"PixelSpacing \[0.0, 0.7\] is outside \(0, 50.0\] mm"),
    ("PixelSpacing", "LO", "0x1F", r"PixelSpacing '0x1F' has 1 value\(s\), 2 expected"),
    ("ImagePositionPatient", "DS", "1\\nan\\3", r"ImagePositionPatient .* is not finite"),
    ("ImageOrientationPatient", "DS", "2\\0\\0\\0\\1\\0", r"ImageOrientationPatient .* not made of two unit vectors"),
    ("ImageOrientationPatient", "DS", "1\\0\\0\\0.6\\0.8\\0", r"ImageOrientationPatient .* not orthogonal"),
    ("ImageOrientationPatient", "DS", "1\\0\\0\\1\\0\\0", r"ImageOrientationPatient .* not orthogonal"),
    ("Rows", "US", 60000, r"Rows 60000 is outside \[1, 4096\]"),
    ("BitsAllocated", "US", 12, r"BitsAllocated 12 is not one of \[8, 16, 32\]"),
    ("BitsAllocated", "LO", "1\\2", r"BitsAllocated .* has 2 value\(s\), 1 expected"),
], ids=lambda v: str(v)[:24])
def test_bad_header_value_is_named(tmp_path, keyword, vr, value, message):
    paths = write_good(tmp_path)
    for p in paths:
        rewrite(p, lambda ds: set_raw(ds, keyword, vr, value))
    with pytest.raises(SeriesError, match=rf"slice0000\.dcm: unreadable DICOM file: {message}"):
        load_series(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing of pydicom's leaks
        with pytest.raises(SeriesError):
            load_series(tmp_path)


def test_one_bad_file_counts_against_the_series(tmp_path):
    paths = write_good(tmp_path)
    rewrite(paths[5], lambda ds: set_raw(ds, "RescaleSlope", "LO", "abc"))
    problem = _refusal(tmp_path)
    assert problem.startswith("1 unreadable DICOM file(s) in the input (e.g. ")
    assert "slice0005.dcm: RescaleSlope 'abc' is not a number" in problem and "11 slice(s) remain" in problem


def test_every_other_file_unreadable_is_not_analysable(tmp_path):
    write_every_other_unreadable(tmp_path)
    problem = _refusal(tmp_path)
    assert "6 unreadable DICOM file(s)" in problem and "6 slice(s) remain at 5.00 mm spacing" in problem


def test_lenient_values_are_ignored_with_a_note(tmp_path):
    paths = write_good(tmp_path)
    rewrite(paths[2], lambda ds: set_raw(ds, "InstanceNumber", "LO", "abc"))
    rewrite(paths[3], lambda ds: set_raw(ds, "SliceThickness", "DS", "1\\2"))
    volume = load_series(tmp_path)
    assert series_problem(volume) is None
    assert any("slice0002.dcm: InstanceNumber 'abc' is not a number; ignored" in w for w in volume.warnings)
    assert any("slice0003.dcm: SliceThickness" in w and "ignored" in w for w in volume.warnings)


def test_missing_rescale_is_an_error_not_a_guess(tmp_path):
    paths = write_good(tmp_path)
    rewrite(paths[4], lambda ds: delattr(ds, "RescaleIntercept"))
    with pytest.raises(SeriesError, match=r"RescaleIntercept missing in 1 file\(s\): .*slice0004\.dcm; Hounsfield"):
        load_series(tmp_path)


def test_huge_intercept_within_limits_cannot_overflow(tmp_path):
    write_series(tmp_path, chest_hu(12, 32, 32), intercept=-1024.0)
    for p in sorted(tmp_path.glob("*.dcm")):
        rewrite(p, lambda ds: setattr(ds, "RescaleIntercept", 90000))
    volume = load_series(tmp_path)
    assert volume.hu.dtype == np.int16 and volume.hu.min() > 0 and volume.hu.max() == 32767  # clipped, not wrapped
    assert series_problem(volume).startswith("implausible pixel values for CT in 12 slice(s)")


def test_nan_position_and_tilt(tmp_path):
    write_ipp_nan(tmp_path / "nan")
    with pytest.raises(SeriesError, match=r"slice0004\.dcm: unreadable DICOM file: ImagePositionPatient .* not finite"):
        load_series(tmp_path / "nan" / "slice0004.dcm")
    write_tilted(tmp_path / "tilt", degrees=8.0)
    problem = _refusal(tmp_path / "tilt")
    assert problem.startswith("gantry tilt of 8.0 degrees: ImagePositionPatient from slice0000.dcm to slice0011.dcm")


def test_pixel_garbage_names_the_slices(tmp_path):
    write_pixel_garbage(tmp_path, random.Random(3))
    problem = _refusal(tmp_path)
    assert problem.startswith("implausible pixel values for CT in 2 slice(s): slice00")
    assert "slice0003.dcm (94%), slice0009.dcm (93%) of the pixels are above 3071 HU" in problem


def test_rust_panic_in_rle_is_a_series_error_and_prints_nothing(tmp_path, capfd, caplog):
    write_bad_rle_table(tmp_path, random.Random(0))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SeriesError, match=r"\.dcm: cannot decode pixel data \(RLE Lossless"):
        load_series(tmp_path)
    assert capfd.readouterr().err == ""


def test_pylibjpeg_rle_panic_is_caught_at_the_decode_call(tmp_path, monkeypatch):
    """pylibjpeg-rle (Rust) panics with a PanicException, a BaseException: the catch at the decode
    call holds for it too, although ingest decodes RLE with pydicom's own decoder by default."""
    import PETriageLib.ingest.load as load

    pytest.importorskip("rle")
    monkeypatch.setattr(load, "RLE_PLUGIN", "pylibjpeg")
    write_corrupt_compressed(tmp_path, random.Random(0), "rle")  # flipped bytes: an index out of bounds in Rust
    with pytest.raises(SeriesError, match=r"cannot decode pixel data \(RLE Lossless.*PanicException"):
        load_series(tmp_path)


def test_real_jpeg_with_corrupt_entropy_data_is_flagged(tmp_path, real_series_dir):
    paths = copy_real_subset(real_series_dir, tmp_path)
    data = bytearray(paths[4].read_bytes())
    sos = data.find(b"\xff\xda")
    for k in range(sos + 3000, sos + 3008):  # entropy-coded data: decodes without error, to garbage
        data[k] ^= 0x5A
    paths[4].write_bytes(bytes(data))
    problem = _refusal(tmp_path)
    assert problem.startswith("implausible pixel values for CT in 1 slice(s) that break from both neighbours: ")
    assert paths[4].name in problem


def test_huge_private_tag_stays_on_disk(tmp_path):
    """Headers are read with defer_size: a 20 MB private element is not loaded (a 200 MB one in four
    files took 1061 MB peak before, 62 MB after, measured in docs/ingest.md)."""
    from PETriageLib.ingest.scan import read_instance

    paths = write_good(tmp_path)
    rewrite(paths[0], lambda ds: ds.add_new(0x00091010, "OB", bytes(20 << 20)))
    inst = read_instance(paths[0])
    assert inst.header.get_item(0x00091010, keep_deferred=True).value is None  # deferred: read only if asked for
    assert load_series(tmp_path).num_slices == 12
