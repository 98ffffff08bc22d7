"""The screening loop writes series N's report in a background thread while series N + 1 runs: the
report folders are the synchronous writer's, byte for byte (timings aside), on_series still comes
in order after each report, and a report that cannot be written makes that series an error."""
from __future__ import annotations

import json
import shutil
import threading

import pytest
from support.dicom_factory import chest_hu, write_series

from PETriageLib.progress import Cancelled
from PETriageLib.screening import many_series
from PETriageLib.screening.many_series import folder_sources, screen_sources
from PETriageLib.screening.one_series import ScreenOptions
from PETriageLib.triage.cascade import build_cascade


@pytest.fixture(scope="module")
def cascade(tiny_checkpoints):
    return build_cascade(*tiny_checkpoints, device="cpu", batch_size=8, all_slices=True)


@pytest.fixture(scope="module")
def archive(phantom_series_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    shutil.copytree(phantom_series_dir, root / "phantom")
    n = 12
    write_series(root / "drawn", chest_hu(n, 64, 64, lung_slices=range(2, n - 2)),
                 series_uid="1.2.826.0.1.3680043.8.498.91")
    return root


def _without_timings(path):
    if path.name == "report.json":
        data = json.loads(path.read_text())
        data.pop("timings_s")
        return data
    if path.name == "summary.md":  # the one line of timings differs from run to run
        lines = path.read_text().splitlines()
        i = lines.index("## Timings (s)")
        return lines[:i + 2] + lines[i + 3:]
    return path.read_bytes()


def _screen(cascade, archive, out, background, **kw):
    calls = []
    ranked = screen_sources(folder_sources(archive), cascade, ScreenOptions(top_k=2), out_root=out,
                            background_writing=background,
                            on_series=lambda src, entry, screened: calls.append(
                                (entry.report_dir, screened is not None and screened.files is not None
                                 and screened.files.report_json.is_file())), **kw)
    return ranked, calls


def test_background_reports_equal_the_synchronous_ones(cascade, archive, tmp_path):
    sync, sync_calls = _screen(cascade, archive, tmp_path / "sync", False)
    bg, bg_calls = _screen(cascade, archive, tmp_path / "bg", True)
    files = sorted(p.relative_to(tmp_path / "sync") for p in (tmp_path / "sync").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "bg") for p in (tmp_path / "bg").rglob("*") if p.is_file())
    names = [p.name for p in files]
    for name in ("report.json", "slices.csv", "summary.md"):
        assert names.count(name) == 2, name
    assert "heatmap_vascular.nrrd" in names and "heatmap_lung.nrrd" in names  # the phantom's
    assert sum(n.startswith("key_") for n in names) == 2  # top-k 2
    for rel in files:
        assert _without_timings(tmp_path / "bg" / rel) == _without_timings(tmp_path / "sync" / rel), rel
    # on_series after each report is on disk, in the worklist's order of series
    assert [c[1] for c in bg_calls] == [True, True] and [c[1] for c in sync_calls] == [True, True]
    assert [c[0].replace("/bg/", "/") for c in bg_calls] == [c[0].replace("/sync/", "/") for c in sync_calls]
    assert [(e.verdict, e.pe_score) for e in bg] == [(e.verdict, e.pe_score) for e in sync]
    assert not [t for t in threading.enumerate() if t.name.startswith("petriage-report")]


def test_a_report_that_cannot_be_written_is_an_error_entry(cascade, archive, tmp_path, monkeypatch):
    real = many_series.write_series_report
    written = []

    def full_disk_on_the_first(screened, out_dir, options):  # a fault injected into the real writer
        if not written:
            written.append(out_dir)
            raise OSError(28, "No space left on device")
        return real(screened, out_dir, options)

    monkeypatch.setattr(many_series, "write_series_report", full_disk_on_the_first)
    ranked, calls = _screen(cascade, archive, tmp_path / "out", True)
    verdicts = sorted(e.verdict for e in ranked)
    assert verdicts[0] == "error" and verdicts[1] != "error"
    failed = next(e for e in ranked if e.verdict == "error")
    assert "No space left on device" in failed.reason
    assert [c[1] for c in calls] == [False, True]  # the failed series has no screening to show


def test_cancel_keeps_the_series_done_before_it(cascade, phantom_series_dir, tmp_path):
    (source,) = folder_sources(phantom_series_dir)
    lungs_done = []
    cancel = threading.Event()

    def step(done, total, message):  # cancel while the second series is triaged, after its lungs
        if message == "lungs" and done == total:
            lungs_done.append(1)
            if len(lungs_done) == 2:
                cancel.set()

    calls = []
    with pytest.raises(Cancelled, match="triage cancelled after 0 of"):
        screen_sources([source, source], cascade, ScreenOptions(top_k=1), out_root=tmp_path, step_progress=step,
                       cancel=cancel, on_series=lambda src, entry, screened: calls.append(entry.verdict))
    assert len(calls) == 1 and calls[0] != "error"  # the first series' entry came, its report is whole
    first = sorted(tmp_path.iterdir())[0]
    assert json.loads((first / "report.json").read_text())["files"]["report_json"] == "report.json"
    assert (first / "heatmap_lung.nrrd").is_file() and len(list(tmp_path.iterdir())) == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("petriage-report")]
