"""`petriage train-seg --manifest` with CPMN: a manifest whose patients have a CTPA and a non-contrast
series on one grid (the contrast column, as `petriage phantom --anatomy real` writes it) trains the
cross-phase model on the pairs and scores it on the NCT series; `petriage evaluate --seg-model` then
gives the same numbers. Unpaired patients are left out with a warning; two series of one phase, a
pair on two grids and masks that disagree are refused with the reason."""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from PETriageLib.cli import main
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
from PETriageLib.phantom import generate_study, write_study
from PETriageLib.phantom.protocol import seeded_uid
from PETriageLib.preprocess.contrast_phase import measure_contrast_phase
from PETriageLib.training.manifest import ManifestError, load_manifest
from PETriageLib.training.seg_manifest_data import manifest_patches
from PETriageLib.training.seg_manifest_pairs import has_pairs, nct_series, paired_series, phase_pairs
from PETriageLib.training.seg_data import nct_rendering

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")
COLUMNS = ["patient_id", "series_dir", "labels_csv", "mask", "patient_label", "contrast"]


def _write_phase(study, root, pid: str, phase: str, volume=None) -> dict:
    """One phase of a patient written as the real-anatomy dataset writes it (PID/PHASE/series ...)."""
    if volume is not None:
        n = volume.num_slices
        meta = {**volume.metadata, "series_uid": seeded_uid(f"{pid}-{phase}-series")}
        volume = replace(volume, metadata=meta, instance_uids=[seeded_uid(f"{pid}-{phase}-{k}") for k in range(n)])
        study = replace(study, volume=volume)
    paths = write_study(study, root / pid / phase)
    return {"patient_id": pid, "series_dir": paths["series_dir"].relative_to(root).as_posix(),
            "labels_csv": paths["labels_csv"].relative_to(root).as_posix(),
            "mask": paths["mask"].relative_to(root).as_posix(), "patient_label": study.patient_label,
            "contrast": phase}


def _write_manifest(root, rows, name="manifest.csv"):
    path = root / name
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """Six small formula phantoms (three with PE), each written as CTPA and as its non-contrast
    rendering (training/seg_data.nct_rendering: same grid and masks), a seventh with CTPA only, and
    a splits file with one PE and one PE-free patient in each split."""
    root = tmp_path_factory.mktemp("pairs")
    rows, pids = [], {True: [], False: []}
    for n, seed in enumerate(range(6)):
        pe = n % 2 == 0
        study = generate_study(seed, matrix=64, slices=12, pe=pe, other=False, difficulty="easy", contrast="ctpa")
        pid = f"P{n}"
        rows += [_write_phase(study, root, pid, "ctpa"), _write_phase(study, root, pid, "none", nct_rendering(study))]
        pids[pe].append(pid)
    lone = generate_study(9, matrix=64, slices=12, pe=True, difficulty="easy", contrast="ctpa")
    rows.append(_write_phase(lone, root, "LONE", "ctpa"))
    splits = {"train": [pids[True][0], pids[False][0], "LONE"], "val": [pids[True][1], pids[False][1]],
              "test": [pids[True][2], pids[False][2]]}
    (root / "splits.json").write_text(json.dumps(splits))
    return root, _write_manifest(root, rows), root / "splits.json", splits, rows


def test_pairs_share_grid_and_clots_and_give_nct_patches(paired, caplog):
    root, manifest, _, splits, _ = paired
    sources = load_manifest(manifest)
    assert {s.contrast for s in sources} == {"ctpa", "none"} and has_pairs(sources)
    with caplog.at_level(logging.WARNING):
        pairs = phase_pairs(sources)
    assert sorted(p.patient_id for p in pairs) == [f"P{n}" for n in range(6)]
    assert "1 of 7 patients have no CTPA / non-contrast pair" in caplog.text and "LONE" in caplog.text
    train = [p for p in pairs if p.patient_id in splits["train"]]
    series = list(paired_series(train))
    pe = next(s for s in series if s.has_pe)
    assert pe.nct.hu.shape == pe.volume.hu.shape and pe.nct.hu.dtype == pe.volume.hu.dtype
    assert not np.array_equal(pe.nct.hu, pe.volume.hu)  # another phase, not a copy
    # the blood pool loses its contrast: triage's phase measurement tells the two apart
    assert measure_contrast_phase(pe.volume).phase == "contrast" and measure_contrast_phase(pe.nct).phase == "non_contrast"
    (nct,) = [s for s in nct_series([pe])]
    assert nct.volume is pe.nct and np.array_equal(nct.clot_ids, pe.clot_ids) and nct.nct is None
    data = manifest_patches(series, patch=32, pixel_mm=3.0)
    assert data.nct is not None and data.nct.shape == data.x.shape and data.mask.any()
    assert not np.allclose(data.nct, data.x)


def test_cpmn_trains_on_the_pairs_and_is_scored_on_nct(paired, tmp_path, monkeypatch):
    root, manifest, splits_file, splits, _ = paired
    out = tmp_path / "run"
    assert main(["-q", "train-seg", "--manifest", str(manifest), "--splits", str(splits_file), "--model", "cpmn",
                 "--model", "resunet", "--steps", "3", "--pixel-mm", "3.0", "--patch", "32", "--out", str(out)]) == 0
    data = json.loads((out / "evaluation.json").read_text())
    assert data["spec"]["pairs"] is True
    runs = {r["label"]: r for r in data["runs"]}
    assert set(runs) == {"cpmn (full)", "resunet"}
    assert set(runs["cpmn (full)"]["test"]) == {"nct"} and set(runs["resunet"]["test"]) == {"ctpa", "nct"}
    for ev in (runs["cpmn (full)"]["test"]["nct"], runs["resunet"]["test"]["ctpa"]):
        assert (ev["patients_positive"], ev["patients_negative"]) == (1, 1) and ev["clots"] >= 1
    model, meta = load_seg_checkpoint(out / "cpmn_full.pt")
    assert meta["task"] == "cross_phase" and meta["training"]["ablation"] == "full"
    assert meta["training"]["train_cases"] == sorted(splits["train"][:2])  # the lone CTPA patient is left out
    tables = (out / "tables.md").read_text()
    assert "| cpmn (full) on NCT |" in tables and "| resunet on CTPA |" in tables
    # evaluate --seg-model scores a cross-phase model on the NCT series of the pairs: the same numbers
    assert main(["-q", "evaluate", "--seg-model", str(out / "cpmn_full.pt"), "--manifest", str(manifest),
                 "--splits", str(splits_file), "--split", "test", "--out", str(tmp_path / "eval")]) == 0
    scores = json.loads((tmp_path / "eval" / "seg_report.json").read_text())["scores"]
    assert scores == runs["cpmn (full)"]["test"]["nct"]
    # ... and a segmentation model on the CTPA series only
    assert main(["-q", "evaluate", "--seg-model", str(out / "resunet.pt"), "--manifest", str(manifest),
                 "--splits", str(splits_file), "--split", "test", "--out", str(tmp_path / "eval2")]) == 0
    scores = json.loads((tmp_path / "eval2" / "seg_report.json").read_text())["scores"]
    assert scores == runs["resunet"]["test"]["ctpa"]
    # ship-seg registers it as a non-contrast model whose card quotes its NCT test scores
    from PETriageLib.models.zoo import read_segmentation_models

    resources = tmp_path / "Resources"
    resources.mkdir()
    (resources / "models.json").write_text('{"models": []}')
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(resources))
    assert main(["ship-seg", str(out), "cpmn (full)", "my_nct"]) == 0
    (entry,) = read_segmentation_models(resources)
    card = entry["card"]
    assert entry["name"] == "my_nct" and "non-contrast chest CT" in card["intended_use"]
    assert card["metrics"]["held_out_nct"]["patient_sensitivity"] == runs["cpmn (full)"]["test"]["nct"]["sensitivity_text"]
    assert "2 training patients (a CTPA and a non-contrast series each)" in card["training_data"]
    assert card["metrics"]["test_set"].startswith("2 test patients (CTPA / NCT pairs) of ")


def test_a_manifest_without_pairs_refuses_cpmn_and_names_the_column(paired, tmp_path, caplog):
    root, _, splits_file, _, rows = paired
    ctpa_only = _write_manifest(root, [r for r in rows if r["contrast"] == "ctpa"], "ctpa_only.csv")
    assert main(["-q", "train-seg", "--manifest", str(ctpa_only), "--splits", str(splits_file), "--model", "cpmn",
                 "--steps", "2", "--pixel-mm", "3.0", "--patch", "32", "--out", str(tmp_path / "run")]) != 0
    assert "cpmn is a cross_phase model: it needs paired CTPA / non-contrast series" in caplog.text
    assert "a 'contrast' column, ctpa / none" in caplog.text


def test_bad_pairs_are_refused_with_the_reason(paired, tmp_path):
    root, _, _, _, rows = paired
    by_pid = {}
    for r in rows:
        by_pid.setdefault(r["patient_id"], {})[r["contrast"]] = r
    # two CTPA series of one patient: which one pairs is not said
    twice = _write_manifest(root, [by_pid["P0"]["ctpa"], by_pid["P0"]["none"], {**by_pid["P1"]["ctpa"],
                                                                               "patient_id": "P0"}], "twice.csv")
    with pytest.raises(ManifestError, match="patient P0: 2 series with contrast 'ctpa'"):
        phase_pairs(load_manifest(twice))
    # the NCT of another patient with another slice count: not one grid
    study = generate_study(40, matrix=64, slices=10, pe=False, difficulty="easy", contrast="ctpa")
    other = _write_phase(study, tmp_path, "X", "none", nct_rendering(study))
    other = {k: (str(tmp_path / v) if k in ("series_dir", "labels_csv", "mask") else v) for k, v in other.items()}
    grid = _write_manifest(root, [by_pid["P0"]["ctpa"], {**other, "patient_id": "P0"}], "grid.csv")
    with pytest.raises(ManifestError, match=r"patient P0 .*the CTPA series is \(12, 64, 64\).*the non-contrast one "
                                            r"\(10, 64, 64\): a cross-phase pair must share its grid"):
        list(paired_series(phase_pairs(load_manifest(grid))))
    # the NCT row's mask lacks the CTPA's clot on one slice: the pair's labels would disagree
    image = sitk.ReadImage(str(root / by_pid["P0"]["none"]["mask"]))
    labels = sitk.GetArrayFromImage(image)
    k = int(np.flatnonzero((labels == 1).any(axis=(1, 2)))[0])
    missing = int((labels[k] == 1).sum())
    labels[k][labels[k] == 1] = 0
    edited = sitk.GetImageFromArray(labels)
    edited.CopyInformation(image)
    sitk.WriteImage(edited, str(tmp_path / "edited.nrrd"))
    wrong = _write_manifest(root, [by_pid["P0"]["ctpa"], {**by_pid["P0"]["none"], "mask": str(tmp_path / "edited.nrrd")}],
                            "wrong_mask.csv")
    with pytest.raises(ManifestError, match="patient P0 .*the non-contrast mask .*edited.nrrd and the CTPA mask .* "
                                            f"disagree on {missing} PE voxels"):
        list(paired_series(phase_pairs(load_manifest(wrong))))
    bad_word = _write_manifest(root, [{**by_pid["P0"]["ctpa"], "contrast": "venous"}], "bad_word.csv")
    with pytest.raises(ManifestError, match="contrast must be ctpa or none .* got 'venous'"):
        load_manifest(bad_word)


def test_a_pair_with_another_direction_is_refused():
    from PETriageLib.ingest.volume import CTVolume
    from PETriageLib.training.seg_manifest_pairs import check_same_grid

    ctpa = CTVolume(np.zeros((3, 8, 8), np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3), np.arange(3) * 2.0,
                    ["a", "b", "c"])
    check_same_grid(ctpa, replace(ctpa, hu=np.ones((3, 8, 8), np.int16)), "patient X")  # same grid: accepted
    with pytest.raises(ManifestError, match=r"patient X: the two phases differ in direction by 2 \(more than 0.001\)"):
        check_same_grid(ctpa, replace(ctpa, direction=np.diag([-1.0, 1.0, 1.0])), "patient X")
