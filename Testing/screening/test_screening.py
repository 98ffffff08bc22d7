"""The one screening loop: one series -> triage -> Grad-CAM -> report, many -> a ranked worklist."""
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
from support.dicom_factory import chest_hu, write_series

from PETriageLib.explain.cam_slices import select_cam_slices
from PETriageLib.explain.heatmaps import compute_heatmaps
from PETriageLib.ingest.load import load_series
from PETriageLib.progress import Cancelled
from PETriageLib.reporting.worklist_csv import write_worklist_csv
from PETriageLib.screening.many_series import SeriesSource, folder_sources, screen_sources
from PETriageLib.screening.one_series import ScreenOptions, screen_files, screen_volume
from PETriageLib.triage.cascade import build_cascade


@pytest.fixture(scope="module")
def cascade(tiny_checkpoints):
    # stage 2 on every lung slice: every analysed row has both probabilities
    return build_cascade(*tiny_checkpoints, device="cpu", batch_size=8, all_slices=True)


def test_one_series_equals_the_steps_run_by_hand(cascade, phantom_series_dir, tmp_path):
    screened = screen_files(cascade, phantom_series_dir, options=ScreenOptions(top_k=3), out_dir=tmp_path)
    by_hand = cascade.run(load_series(phantom_series_dir))
    assert [(r.p_disease, r.p_pe, r.label) for r in screened.result.rows] == \
        [(r.p_disease, r.p_pe, r.label) for r in by_hand.rows]
    slices = select_cam_slices(by_hand.rows, "top-k", 3)
    assert screened.heatmaps.slices == slices and len(slices) == 3
    reference = compute_heatmaps(cascade, by_hand, slices).volumes
    for branch, vol in screened.heatmaps.volumes.items():
        np.testing.assert_allclose(vol, reference[branch], atol=1e-5)
    data = json.loads(screened.files.report_json.read_text())
    assert list(data["timings_s"])[0] == "reading" and {"gradcam", "writing"} <= set(data["timings_s"])
    assert "writing" not in screened.result.timings  # the report never changes the result it writes
    assert data["gradcam"] == screened.heatmaps.info()
    assert [p.name for p in screened.files.heatmaps] == ["heatmap_vascular.nrrd", "heatmap_lung.nrrd"]
    assert len(screened.files.key_images) == 3


def test_no_grad_cam_and_no_report_when_not_asked(cascade, phantom_series_dir, tmp_path):
    screened = screen_volume(cascade, load_series(phantom_series_dir), ScreenOptions(cam="none"))
    assert screened.heatmaps is None and screened.files is None
    assert "reading" not in screened.result.timings
    with pytest.raises(ValueError, match="unknown Grad-CAM mode"):
        ScreenOptions(cam="all")


def test_not_analysable_series_gets_no_heatmaps(cascade, phantom_series_dir, tmp_path):
    volume = load_series(phantom_series_dir)
    volume.metadata["modality"] = "MR"
    screened = screen_volume(cascade, volume, out_dir=tmp_path)
    assert screened.result.verdict.verdict == "not_analysable" and screened.heatmaps is None
    assert not list(tmp_path.glob("heatmap_*"))


def test_many_series_become_one_ranked_worklist(cascade, phantom_series_dir, tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(phantom_series_dir, archive / "phantom")
    n = 12
    write_series(archive / "mr", chest_hu(n, 64, 64, lung_slices=range(n)), modality="MR",
                 series_uid="1.2.826.0.1.3680043.8.498.77")
    write_series(archive / "short", chest_hu(4, 64, 64, lung_slices=range(4)), series_uid="1.2.826.0.1.3680043.8.498.78")
    broken = write_series(archive / "broken", chest_hu(n, 64, 64, lung_slices=range(n)),
                          series_uid="1.2.826.0.1.3680043.8.498.79")
    for path in broken[3:]:  # pixel data cut off: the headers scan, the series cannot be read
        path.write_bytes(path.read_bytes()[:-2000])
    sources = folder_sources(archive)
    assert len(sources) == 4
    seen, ticks = [], []
    ranked = screen_sources(sources, cascade, ScreenOptions(cam="none"), out_root=tmp_path / "reports",
                            progress=lambda d, t, m: ticks.append((d, t)),
                            on_series=lambda src, entry, screened: seen.append((src.series_uid, entry.verdict)))
    by_uid = {e.series_uid: e for e in ranked}
    assert [e.rank for e in ranked] == [1, 2, 3, 4] and len(seen) == 4 and ticks[-1] == (4, 4)
    mr = by_uid["1.2.826.0.1.3680043.8.498.77"]
    assert mr.verdict == "not_analysable" and mr.reason == "not a CT series (modality MR)" and mr.report_dir == ""
    short = by_uid["1.2.826.0.1.3680043.8.498.78"]
    assert short.verdict == "not_analysable" and "too few slices" in short.reason
    assert by_uid["1.2.826.0.1.3680043.8.498.79"].verdict == "error"
    top = ranked[0]
    assert top.pe_score is not None and top.verdict in ("pe_suspected", "other_disease", "no_finding")
    assert (tmp_path / "reports").is_dir() and (next(iter((tmp_path / "reports").glob("*"))) / "report.json").is_file()
    assert all(e.pe_score is None for e in ranked[1:])  # unscored series after the scored one
    write_worklist_csv(ranked, tmp_path / "worklist.csv")
    assert (tmp_path / "worklist.csv").read_text().count("\n") == 5


def test_screening_stops_between_series_when_cancelled(cascade, phantom_series_dir):
    source = SeriesSource([str(p) for p in sorted(phantom_series_dir.glob("*.dcm"))], "x", modality="CT")
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled, match="screening cancelled after 0 of 2 series"):
        screen_sources([source, source], cascade, cancel=event)


def test_no_chosen_slice_means_no_heatmap_files(cascade, phantom_series_dir, tmp_path):
    """No slice chosen (top-k 0, or --cam pe without a pe slice): no Grad-CAM and no all-zero
    heatmap files that would read as "looked nowhere"."""
    screened = screen_files(cascade, phantom_series_dir, options=ScreenOptions(cam="top-k", top_k=0),
                            out_dir=tmp_path)
    assert screened.heatmaps is None and not list(tmp_path.glob("heatmap_*"))
    data = json.loads(screened.files.report_json.read_text())
    assert data["gradcam"] == {} and "gradcam" not in data["timings_s"]


def test_an_internal_error_is_named_by_its_type(cascade, phantom_series_dir, monkeypatch):
    """A defect inside PETriage (not a PETriage error; injected here, since none is known) still
    becomes a worklist row, named as one, and the rest of the worklist goes on."""
    from PETriageLib.screening import many_series

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(many_series, "screen_files", broken)
    source = SeriesSource([str(p) for p in sorted(phantom_series_dir.glob("*.dcm"))], "x", modality="CT")
    entry = screen_sources([source], cascade)[0]
    assert entry.verdict == "error" and entry.reason.startswith("internal error (ZeroDivisionError")
