"""Instances the listener received but could not decode (issue #25 with #22): a lost slice, the
first or the last included, makes the series not analysable, as files that cannot be read do in
`petriage triage`; a bad copy of a slice that was also decoded costs nothing but a warning."""
from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.uid import generate_uid
from support.fuzz_series import write_good

from PETriageLib.pacs.series_queue import SeriesQueue
from PETriageLib.pacs.spool import spool_instance
from PETriageLib.pacs.worker import triage_series
from PETriageLib.screening.one_series import ScreenOptions


@pytest.fixture(scope="module")
def cascade(tiny_checkpoints):
    from PETriageLib.triage.cascade import build_cascade

    return build_cascade(str(tiny_checkpoints[0]), str(tiny_checkpoints[1]), device="cpu", batch_size=8)


def _cut_pixels(ds: pydicom.Dataset) -> pydicom.Dataset:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return ds


def _receive(spool, datasets: list[pydicom.Dataset]):
    queue = SeriesQueue(spool)
    for ds in datasets:
        spool_instance(spool, queue, ds, _encoded(spool, ds), "SCANNER")
    (series_uid,) = queue.settle(0)
    return queue, series_uid, queue.claim()[1]


def _encoded(spool, ds: pydicom.Dataset) -> bytes:
    path = spool / "sent.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


@pytest.mark.parametrize("lost", [0, 6, 11], ids=["first", "interior", "last"])
def test_a_lost_slice_anywhere_makes_the_series_not_analysable(tmp_path, cascade, lost):
    datasets = [pydicom.dcmread(p) for p in write_good(tmp_path / "series")]
    _cut_pixels(datasets[lost])
    queue, uid, version = _receive(tmp_path / "spool", datasets)
    outcome = triage_series(queue, cascade, ScreenOptions(cam="none"), tmp_path / "spool", uid, version)
    assert outcome.state == "skipped" and outcome.entry.verdict == "not_analysable"
    assert outcome.reason.startswith("1 instance(s) of the series could not be decoded (e.g. ")
    assert "pixel data cannot be decoded" in outcome.reason and "11 slice(s) remain" in outcome.reason


def test_a_bad_duplicate_is_left_out_with_a_warning(tmp_path, cascade):
    datasets = [pydicom.dcmread(p) for p in write_good(tmp_path / "series")]
    copy = pydicom.dcmread(tmp_path / "series" / "slice0005.dcm")
    copy.SOPInstanceUID = generate_uid()
    queue, uid, version = _receive(tmp_path / "spool", [*datasets, _cut_pixels(copy)])
    outcome = triage_series(queue, cascade, ScreenOptions(cam="none"), tmp_path / "spool", uid, version)
    assert outcome.state in ("done", "skipped") and outcome.entry is not None
    report = json.loads((tmp_path / "spool" / "results" / uid / "v1" / "report" / "report.json").read_text())
    assert not any("could not be decoded" in w for w in report["warnings"])
    assert any(w.startswith("1 instance(s) left out (e.g. ") and "no slice is missing" in w for w in report["warnings"])
    assert len(report["slices"]) == 12
