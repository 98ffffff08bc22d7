"""JPEG Lossless (1.2.840.10008.1.2.4.70 and .57), encoded by DCMTK's dcmcjpeg, sent by a real Orthanc:
the listener receives it as sent, decodes it and triages it with the same probabilities as the
uncompressed original (lossless: equal within 1e-6)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLossless, JPEGLosslessSV1, generate_uid

from PETriageLib.ingest.load import load_series
from PETriageLib.phantom import generate_study, write_study
from PETriageLib.triage.cascade import build_cascade
from support.jpeg_lossless import DCMCJPEG, MISSING, encode_jpeg_lossless

pytestmark = pytest.mark.skipif(DCMCJPEG is None, reason=MISSING)
SYNTAXES = (JPEGLosslessSV1, JPEGLossless)  # slices 0-7 and 8-15


def compressed_copy(original: list[Path], out: Path) -> list[Path]:
    """The same slices as a new series (new UIDs, same pixels), half in each JPEG Lossless syntax."""
    out.mkdir(parents=True)
    series_uid, files = generate_uid(), []
    for n, path in enumerate(original):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        plain = out / f"plain_{n:02d}.dcm"
        ds.save_as(plain, enforce_file_format=True)
        files.append(encode_jpeg_lossless(plain, out / f"{n:02d}.dcm", SYNTAXES[n * len(SYNTAXES) // len(original)]))
        plain.unlink()
    return files


@pytest.fixture(scope="module")
def triaged(orthanc, start_listener, tmp_path_factory):
    work = tmp_path_factory.mktemp("jpeg_lossless")
    original = sorted(write_study(generate_study(71, matrix=128, slices=16, pe=True), work / "study")["series_dir"]
                      .glob("*.dcm"))
    compressed = compressed_copy(original, work / "compressed")
    ids = orthanc.upload(original + compressed)
    listener = start_listener(work / "spool")
    orthanc.store_to("petriage", [orthanc.request("GET", f"/instances/{ids[0]}/study")["ID"]])
    uids = [str(pydicom.dcmread(f[0]).SeriesInstanceUID) for f in (original, compressed)]
    listener.wait_for("SELECT 1 WHERE (SELECT COUNT(*) FROM series WHERE state='done') = 2", timeout_s=180)
    return listener, original, compressed, uids


def spooled(listener, series_uid: str) -> list[Path]:
    return [Path(p) for (p,) in listener.query("SELECT path FROM instances WHERE series_uid=? AND skipped IS NULL "
                                               "ORDER BY path", (series_uid,))]


def test_orthanc_sends_jpeg_lossless_as_it_is_and_it_decodes_to_the_same_pixels(triaged):
    listener, original, compressed, uids = triaged
    received = spooled(listener, uids[1])
    syntaxes = [str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in received]
    assert sorted(syntaxes) == sorted([str(JPEGLossless)] * 8 + [str(JPEGLosslessSV1)] * 8)
    by_position = {tuple(pydicom.dcmread(p).ImagePositionPatient): pydicom.dcmread(p).pixel_array for p in original}
    for path in received:
        ds = pydicom.dcmread(path)
        np.testing.assert_array_equal(ds.pixel_array, by_position[tuple(ds.ImagePositionPatient)])


def test_the_listener_triages_it_with_the_probabilities_of_the_original(triaged, tiny_checkpoints):
    listener, original, compressed, uids = triaged
    csvs = []
    for uid in uids:
        (result_dir,) = listener.query("SELECT result_dir FROM series WHERE series_uid=?", (uid,))[0]
        (path,) = Path(result_dir).rglob("slices.csv")
        csvs.append([(r["z"], r["has_lung"], r["p_disease"], r["p_pe"], r["label"])
                     for r in csv.DictReader(path.open())])
    assert len(csvs[0]) == 16 and csvs[1] == csvs[0]
    assert any(row[2] for row in csvs[0])  # probabilities were computed, not all empty
    # full precision: the same cascade on the files the listener received and on the originals
    cascade = build_cascade(*tiny_checkpoints, device="cpu")
    rows = [cascade.run(load_series(files)).rows for files in (original, spooled(listener, uids[1]))]
    for name in ("p_disease", "p_pe"):
        a, b = ([np.nan if getattr(r, name) is None else getattr(r, name) for r in rr] for rr in rows)
        assert np.isfinite(a).any()
        np.testing.assert_allclose(b, a, atol=1e-6, equal_nan=True)
