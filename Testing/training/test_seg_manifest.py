"""`petriage train-seg --manifest`: embolus segmentation trained on a manifest's own series and masks
(here: formula phantoms written as a dataset), scored on its test split as whole volumes, with
evaluation.json and the tables; a series without a mask, a mask on another grid and a cross-phase
model are refused with the reason."""
from __future__ import annotations

import csv
import json
import logging
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from PETriageLib.cli import main
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
from PETriageLib.phantom.dataset import generate_dataset
from PETriageLib.training.lesion_masks import MaskError
from PETriageLib.training.manifest import ManifestError, load_manifest
from PETriageLib.training.seg_manifest_data import UNLABELLED, manifest_patches, mask_classes, masked_series
from PETriageLib.training.seg_manifest_run import split_sources
from PETriageLib.training.seg_volume_eval import choose_operating_point

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Six small CTPA phantoms, three with PE, written as a dataset (manifest.csv with a mask column),
    and a splits file with one PE and one PE-free patient in each of train, val and test."""
    root = tmp_path_factory.mktemp("segds")
    manifest = generate_dataset(root, 6, seed=3, pe_fraction=0.5, other_fraction=0.0, contrast="ctpa",
                                matrix=64, slices=12, difficulty="easy")
    rows = list(csv.DictReader(manifest.open()))
    pe = [r["patient_id"] for r in rows if r["patient_label"] == "pe"]
    no = [r["patient_id"] for r in rows if r["patient_label"] != "pe"]
    assert len(pe) == 3 and len(no) == 3
    splits = {"train": [pe[0], no[0]], "val": [pe[1], no[1]], "test": [pe[2], no[2]]}
    (root / "splits.json").write_text(json.dumps(splits))
    return manifest, root / "splits.json", splits


def test_masks_become_clots_and_patches(dataset):
    manifest, _, splits = dataset
    sources = [s for s in load_manifest(manifest) if s.patient_id in splits["train"]]
    series = list(masked_series(sources))
    pe = next(s for s in series if s.patient_id == splits["train"][0])
    assert pe.has_pe and pe.masks.shape == pe.volume.hu.shape and set(pe.clot_levels) == {UNLABELLED}
    assert int(pe.clot_ids.max()) == len(pe.clot_levels) and ((pe.clot_ids > 0) == (pe.masks > 0)).all()
    data = manifest_patches(series, patch=32, pixel_mm=3.0)
    assert data.x.shape[1:] == (2, 32, 32) and data.mask.shape[1:] == (1, 32, 32) and data.nct is None
    assert data.mask.any() and (~data.mask.reshape(len(data), -1).any(axis=1)).any()  # clots and negatives


def test_train_seg_on_a_manifest_scores_its_test_split(dataset, tmp_path, capsys, caplog):
    manifest, splits_file, splits = dataset
    out = tmp_path / "run"
    args = ["-q", "train-seg", "--manifest", str(manifest), "--splits", str(splits_file), "--model", "resunet",
            "--steps", "3", "--pixel-mm", "3.0", "--patch", "32", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| resunet on MANIFEST |" in printed and "unlabelled: found / recall (%)" in printed
    _, meta = load_seg_checkpoint(out / "resunet.pt")
    assert meta["pixel_mm"] == 3.0 and meta["training"]["train_cases"] == splits["train"]
    (run,) = json.loads((out / "evaluation.json").read_text())["runs"]
    ev = run["test"]["manifest"]
    assert (ev["patients_positive"], ev["patients_negative"]) == (1, 1) and ev["clots"] >= 1
    assert ev["threshold"] == meta["threshold"] == run["validation"]["threshold"]
    # petriage evaluate --seg-model scores the same split at the checkpoint's point: the same numbers
    assert main(["-q", "evaluate", "--seg-model", str(out / "resunet.pt"), "--manifest", str(manifest),
                 "--splits", str(splits_file), "--split", "test", "--out", str(tmp_path / "eval")]) == 0
    scores = json.loads((tmp_path / "eval" / "seg_report.json").read_text())["scores"]
    assert scores == ev
    assert "| Model | Dice (%)" in (tmp_path / "eval" / "seg_report.md").read_text()
    assert main(args + ["--model", "cpmn"]) != 0
    assert "cpmn is a cross_phase model: it needs paired CTPA / non-contrast series" in caplog.text


def test_a_series_without_a_mask_or_with_one_on_another_grid_is_refused(dataset, tmp_path):
    manifest, _, splits = dataset
    source = next(s for s in load_manifest(manifest) if s.patient_id == splits["train"][0])
    source.mask = None
    with pytest.raises(ManifestError, match=f"patient {source.patient_id}.*needs a mask"):
        list(masked_series([source]))
    source = next(s for s in load_manifest(manifest) if s.patient_id == splits["train"][0])
    small = tmp_path / "mask.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((12, 32, 32), np.uint8)), str(small))
    source.mask = small
    with pytest.raises(MaskError, match="does not match the series' slices"):
        list(masked_series([source]))


def test_the_operating_point_needs_validation_studies_with_and_without_pe(dataset):
    manifest, _, splits = dataset
    series = list(masked_series([s for s in load_manifest(manifest) if s.patient_id in splits["val"]]))
    pe = next(s for s in series if s.has_pe)
    neg = next(s for s in series if not s.has_pe)
    truth = [(pe.clot_ids > 0).astype(np.float32), np.zeros(neg.masks.shape, np.float32)]
    with pytest.raises(ValueError, match=r"^no PE studies on validation \(1 studies, none with a clot\): cannot "
                                         "choose an operating point"):
        choose_operating_point(truth[1:], [neg])
    with pytest.raises(ValueError, match=r"^no study without PE on validation \(all 1 have clots\): cannot "
                                         "choose an operating point \\(patient specificity is undefined\\)"):
        choose_operating_point(truth[:1], [pe])
    point = choose_operating_point(truth, [pe, neg])
    assert point.sensitivity == 1.0 and point.specificity == 1.0


def _manifest_without_patient_label(manifest):
    """The dataset's manifest without its patient_label column, beside it (its paths are relative)."""
    rows = list(csv.DictReader(manifest.open()))
    path = manifest.parent / "manifest_no_patient_label.csv"
    with path.open("w", newline="") as fh:
        columns = [c for c in rows[0] if c != "patient_label"]
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path, {r["patient_id"]: r["patient_label"] == "pe" for r in rows}


def test_without_patient_label_the_split_is_stratified_and_has_pe_recorded_from_the_masks(dataset, tmp_path):
    manifest, _, _ = dataset
    unlabelled, truth = _manifest_without_patient_label(manifest)
    sources = load_manifest(unlabelled)
    assert all(s.patient_label is None for s in sources)
    pe = {s.key: "pe" in mask_classes(s) for s in sources}
    assert {s.patient_id: pe[s.key] for s in sources} == truth  # the masks hold the PE patients' clots
    parts = split_sources(sources, {s.key: mask_classes(s) for s in sources}, tmp_path / "splits.json")
    # 3 PE and 3 PE-free patients at 5:3:2: one of each in every split (unstratified, seed 0 gives
    # the test split a single patient, so validation or test would miss one class)
    for name, part in parts.items():
        assert sorted(pe[s.key] for s in part) == [False, True], name
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert {name: sorted(s.patient_id for s in part) for name, part in parts.items()} == saved

    out = tmp_path / "run"
    assert main(["-q", "train-seg", "--manifest", str(unlabelled), "--model", "resunet", "--steps", "2",
                 "--pixel-mm", "3.0", "--patch", "32", "--out", str(out)]) == 0
    assert json.loads((out / "splits.json").read_text()) == saved  # the automatic split, written to --out
    split = json.loads((out / "evaluation.json").read_text())["split"]
    for key, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        assert sorted(split[key]) == sorted([pid, None, truth[pid]] for pid in saved[name])


def _train_seg(manifest, splits_file, model, out) -> list:
    assert main(["-q", "train-seg", "--manifest", str(manifest), "--splits", str(splits_file), "--model", model,
                 "--steps", "2", "--pixel-mm", "3.0", "--patch", "32", "--out", str(out)]) == 0
    return json.loads((out / "evaluation.json").read_text())["runs"]


@pytest.fixture(scope="module")
def resunet_run(dataset, tmp_path_factory):
    """A train-seg --manifest folder with one run, resunet (tests copy it before changing it)."""
    manifest, splits_file, _ = dataset
    out = tmp_path_factory.mktemp("resunet_run")
    _train_seg(manifest, splits_file, "resunet", out)
    return out


def _scratch_resources(tmp_path, monkeypatch):
    resources = tmp_path / "Resources"
    resources.mkdir()
    (resources / "models.json").write_text('{"models": []}')
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(resources))
    return resources


def test_another_model_in_the_same_folder_keeps_the_earlier_runs(dataset, resunet_run, tmp_path, monkeypatch,
                                                                 caplog):
    from PETriageLib.models.zoo import read_segmentation_models

    manifest, splits_file, splits = dataset
    out = tmp_path / "run"
    shutil.copytree(resunet_run, out)
    (first,) = json.loads((out / "evaluation.json").read_text())["runs"]
    runs = _train_seg(manifest, splits_file, "fusa_resunet", out)
    assert [r["label"] for r in runs] == ["resunet", "fusa_resunet"] and runs[0] == first
    tables = (out / "tables.md").read_text()
    assert "| resunet on MANIFEST |" in tables and "| fusa_resunet on MANIFEST |" in tables
    # the earlier run's volume-table row, rebuilt from evaluation.json's counts
    row = next(line for line in tables.splitlines() if line.startswith("| resunet on MANIFEST |"))
    ev = first["test"]["manifest"]
    assert f"| {ev['clots_found']}/{ev['clots']} |" in row and row.endswith(
        f"| p >= {ev['threshold']:g}, comps >= {ev['min_component_ml']:g} mL |")
    resources = _scratch_resources(tmp_path, monkeypatch)
    assert main(["ship-seg", str(out), "resunet", "mine"]) == 0  # the earlier run is still shippable
    assert [e["name"] for e in read_segmentation_models(resources)] == ["mine"]
    # rerunning a label replaces its entry in place
    runs = _train_seg(manifest, splits_file, "resunet", out)
    assert [r["label"] for r in runs] == ["resunet", "fusa_resunet"]
    # another split: the earlier runs were scored on other series, so they are dropped with a warning
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps({"train": splits["train"], "val": splits["test"], "test": splits["val"]}))
    with caplog.at_level(logging.WARNING, logger="PETriageLib.training.seg_real_run"):
        runs = _train_seg(manifest, swapped, "resunet", out)
    assert [r["label"] for r in runs] == ["resunet"]
    assert "was written for another data spec or split: its runs (resunet, fusa_resunet) are dropped" in caplog.text
    assert "fusa_resunet" not in (out / "tables.md").read_text()


def test_ship_seg_refuses_a_checkpoint_whose_operating_point_is_not_the_evaluated_one(resunet_run, tmp_path,
                                                                                    monkeypatch, caplog):
    from PETriageLib.models.seg_checkpoint import save_seg_checkpoint
    from PETriageLib.models.zoo import read_segmentation_models

    out = tmp_path / "run"
    shutil.copytree(resunet_run, out)
    (run,) = json.loads((out / "evaluation.json").read_text())["runs"]
    point = (run["validation"]["threshold"], run["validation"]["min_component_ml"])
    model, meta = load_seg_checkpoint(out / "resunet.pt")
    assert (meta["threshold"], meta["min_component_ml"]) == point
    resources = _scratch_resources(tmp_path, monkeypatch)
    other = 0.35 if point[0] != 0.35 else 0.45
    for changed in ((other, point[1]), (point[0], point[1] + 0.5)):  # threshold, then the minimum component
        save_seg_checkpoint(out / "resunet.pt", model, input_size=meta["input_size"], threshold=changed[0],
                            training=meta["training"], pixel_mm=meta["pixel_mm"], min_component_ml=changed[1])
        caplog.clear()
        assert main(["ship-seg", str(out), "resunet", "mine"]) != 0
        assert (f"resunet.pt runs at p >= {changed[0]:g}, comps >= {changed[1]:g} mL, but evaluation.json scores "
                f"run 'resunet' at p >= {point[0]:g}, comps >= {point[1]:g} mL") in caplog.text
        assert read_segmentation_models(resources) == []  # nothing registered
    save_seg_checkpoint(out / "resunet.pt", model, input_size=meta["input_size"], threshold=point[0],
                        training=meta["training"], pixel_mm=meta["pixel_mm"], min_component_ml=point[1])
    assert main(["ship-seg", str(out), "resunet", "mine"]) == 0
    assert [e["name"] for e in read_segmentation_models(resources)] == ["mine"]
