"""Lesion segmentation beyond the embolus: ResUnet / FUSA-ResUnet with one output channel per lesion
class (PE, other lung disease), trained from a manifest's mask codes, each class with its own
operating point and table rows in train-seg and `petriage evaluate --seg-model`; a model without
the embolus class is refused by the PE pathways."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from PETriageLib.cli import main
from PETriageLib.errors import CheckpointError
from PETriageLib.ingest.volume import CTVolume
from PETriageLib.models.registry import build_model
from PETriageLib.models.seg_checkpoint import class_point, load_seg_checkpoint, save_seg_checkpoint
from PETriageLib.models.seg_predict import predict_embolus_probability, predict_lesion_probabilities
from PETriageLib.phantom import generate_study, write_study
from PETriageLib.training.manifest import ManifestError, Source, load_manifest
from PETriageLib.training.seg_manifest_run import (ManifestSegPlan, check_validation_has, run_manifest_segmentation,
                                                   split_sources)
from PETriageLib.training.seg_manifest_data import OTHER_LEVEL, MaskedSeries, manifest_patches, mask_classes, masked_series
from PETriageLib.training.seg_volume_eval import evaluate_volumes
from PETriageLib.training.segmentation import SegTrainConfig, train_segmentation
from PETriageLib.triage.embolus import load_embolus_model

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")
# (PE, consolidation) per patient: every split has patients with and without each lesion class
MATRIX = 128
PATIENTS = {"train": [(True, True), (False, True), (True, False)], "val": [(True, True), (False, False)],
            "test": [(True, False), (False, True)]}


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    """Seven small CTPA phantoms written as a dataset (manifest with the mask column: 1 = PE,
    2 = consolidation) and the splits file of PATIENTS."""
    root = tmp_path_factory.mktemp("lesions")
    rows, splits, n = [], {}, 0
    for split, flags in PATIENTS.items():
        for pe, other in flags:
            study = generate_study(20 + n, matrix=MATRIX, slices=12, pe=pe, other=other, other_kinds=["consolidation"] if other else None,
                                   difficulty="easy", contrast="ctpa")
            pid = f"L{n}"
            paths = write_study(study, root / pid)
            rows.append({"patient_id": pid, "series_dir": f"{pid}/series", "labels_csv": f"{pid}/labels.csv",
                         "mask": f"{pid}/mask.nrrd", "patient_label": study.patient_label})
            assert paths["mask"].is_file()
            splits.setdefault(split, []).append(pid)
            n += 1
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "splits.json").write_text(json.dumps(splits))
    return manifest, root / "splits.json", splits


def test_a_two_class_resunet_has_a_channel_per_class_and_keeps_them_in_its_checkpoint(tmp_path):
    model = build_model("fusa_resunet", windows=("vascular", "lung"), width=0.125, classes=["pe", "other"]).eval()
    assert model.classes == ("pe", "other") and model.config["classes"] == ["pe", "other"]
    assert model(torch.zeros(2, 2, 32, 48)).shape == (2, 2, 32, 48)
    # given in any order, the classes take LESION_CLASSES' order: the embolus is channel 0
    reordered = build_model("resunet", windows=("vascular", "lung"), width=0.125, classes=["other", "pe"])
    assert reordered.classes == ("pe", "other") and reordered.channel("pe") == 0
    one = build_model("resunet", windows=("vascular", "lung"), width=0.125)
    assert one.classes == ("pe",) and "classes" not in one.config  # a one-class model's config is unchanged
    path = save_seg_checkpoint(tmp_path / "two.pt", model, input_size=32, threshold=0.4, min_component_ml=0.1,
                               class_points={"other": (0.7, 2.0)})
    loaded, meta = load_seg_checkpoint(path)
    assert loaded.classes == ("pe", "other") and meta["lesion_classes"] == ["pe", "other"]
    assert class_point(meta, "pe") == (0.4, 0.1) and class_point(meta, "other") == (0.7, 2.0)
    with pytest.raises(ValueError, match="no operating point for lesion class"):
        save_seg_checkpoint(tmp_path / "bad.pt", model, input_size=32)
    for bad in ([], ["pe", "pe"], ["tumour"]):
        with pytest.raises(ValueError, match="give one or more of pe, other, each once"):
            build_model("resunet", windows=("vascular", "lung"), width=0.125, classes=bad)
    with pytest.raises(ValueError, match=r"does not take \['classes'\]"):
        build_model("cpmn", windows=("vascular", "lung"), width=0.125, classes=["pe", "other"])


def test_an_other_disease_model_is_refused_where_emboli_are_asked_for(tmp_path):
    model = build_model("resunet", windows=("vascular", "lung"), width=0.125, classes=["other"]).eval()
    path = save_seg_checkpoint(tmp_path / "other.pt", model, input_size=32)
    volume = CTVolume(np.full((3, 32, 32), -800, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3),
                      np.arange(3) * 2.0, ["a", "b", "c"])
    assert predict_lesion_probabilities(model, volume)["other"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="segments other disease, not embolus"):
        predict_embolus_probability(model, volume)
    with pytest.raises(CheckpointError, match="segments other only, not emboli"):
        load_embolus_model(path, "ctpa")


def test_patches_carry_one_mask_channel_per_class(lesions):
    manifest, _, splits = lesions
    series = list(masked_series([s for s in load_manifest(manifest) if s.patient_id in splits["train"]]))
    both = series[0]
    other = both.for_class("other")
    assert set(other.clot_levels) == {OTHER_LEVEL} and int(other.clot_ids.max()) == len(other.clot_levels) >= 1
    # the PE class is code 1 only, the other class every other non-zero code
    assert np.array_equal(other.masks.astype(bool) | both.masks.astype(bool), both.labels > 0)
    data = manifest_patches(series, patch=32, pixel_mm=3.0, classes=("pe", "other"))
    assert data.mask.shape[1:] == (2, 32, 32) and data.mask[:, 0].any() and data.mask[:, 1].any()
    pe_only = manifest_patches(series, patch=32, pixel_mm=3.0)
    assert pe_only.mask.shape[1] == 1


def test_train_seg_scores_each_lesion_class_and_evaluate_gives_the_same(lesions, tmp_path, capsys):
    manifest, splits_file, _ = lesions
    out = tmp_path / "run"
    assert main(["-q", "train-seg", "--manifest", str(manifest), "--splits", str(splits_file), "--model",
                 "fusa_resunet", "--lesion-classes", "pe,other", "--steps", "3", "--pixel-mm", "3.0", "--patch", "32",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| fusa_resunet on MANIFEST |" in printed and "| fusa_resunet on MANIFEST, other disease |" in printed
    assert "other disease: found / recall (%)" in printed
    (run,) = json.loads((out / "evaluation.json").read_text())["runs"]
    assert set(run["test"]) == {"manifest", "manifest-other"}
    other = run["test"]["manifest-other"]
    assert (other["patients_positive"], other["patients_negative"]) == (1, 1) and other["clots"] >= 1
    assert set(other["levels"]) >= {OTHER_LEVEL} and other["levels"][OTHER_LEVEL]["clots"] == other["clots"]
    _, meta = load_seg_checkpoint(out / "fusa_resunet.pt")
    assert meta["lesion_classes"] == ["pe", "other"] == meta["training"]["lesion_classes"]
    assert class_point(meta, "other") == (other["threshold"], other["min_component_ml"])
    assert class_point(meta, "pe") == (run["test"]["manifest"]["threshold"], run["test"]["manifest"]["min_component_ml"])
    assert main(["-q", "evaluate", "--seg-model", str(out / "fusa_resunet.pt"), "--manifest", str(manifest),
                 "--splits", str(splits_file), "--split", "test", "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "seg_report.json").read_text())
    assert report["lesion_classes"] == ["pe", "other"]
    assert report["scores"] == run["test"]["manifest"] == report["class_scores"]["pe"]
    assert report["class_scores"]["other"] == other
    assert "| " + str(out / "fusa_resunet.pt") + " on test, other disease |" in (tmp_path / "eval" / "seg_report.md").read_text()
    # resuming the folder with other classes than its checkpoint's is refused, not silently the file's
    with pytest.raises(ManifestError, match="segments pe, other, but this run asks for pe: use another --out"):
        run_manifest_segmentation(ManifestSegPlan(manifest, splits_file, pixel_mm=3.0, patch=32),
                                  [SegTrainConfig(model="fusa_resunet", width=0.125, steps=1)], out)


def _consolidation_series(seed: int, other: bool = True) -> MaskedSeries:
    study = generate_study(seed, matrix=128, slices=24, pe=False, other=other,
                           other_kinds=["consolidation"] if other else None, difficulty="easy", contrast="ctpa")
    return MaskedSeries(str(seed), study.volume, np.zeros(study.masks.shape, np.uint8),
                        np.zeros(study.masks.shape, np.uint16), [], labels=study.masks)


def test_a_tiny_model_learns_consolidation():
    """Voxel Dice of the other-disease class on two held-out phantoms with consolidation rises well
    above an untrained model's (both at p >= 0.5)."""
    train = [_consolidation_series(100 + i, other=i % 3 != 2) for i in range(6)]
    test = [_consolidation_series(200).for_class("other"), _consolidation_series(201).for_class("other")]
    data = manifest_patches(train, patch=64, pixel_mm=3.0, classes=("other",))
    dice = {}
    for steps in (1, 300):
        model = train_segmentation(data, SegTrainConfig(model="resunet", width=0.125, steps=steps, lr=3e-3,
                                                        classes=("other",))).model
        probs = [predict_lesion_probabilities(model, s.volume, pixel_mm=3.0)["other"] for s in test]
        dice[steps] = evaluate_volumes(probs, test, threshold=0.5).dice
    assert dice[300] > max(0.2, 3 * dice[1]), dice


def test_cli_refuses_lesion_classes_where_they_cannot_apply(lesions, tmp_path):
    manifest, splits_file, _ = lesions
    base = ["-q", "train-seg", "--steps", "1", "--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit, match="--lesion-classes needs --manifest"):
        main(base + ["--lesion-classes", "pe,other"])
    with pytest.raises(SystemExit, match="only resunet and fusa_resunet segment more than the embolus, not cpmn"):
        main(base + ["--manifest", str(manifest), "--model", "cpmn", "--lesion-classes", "other"])


KINDS = {"pe+other": {"pe", "other"}, "pe": {"pe"}, "other": {"other"}, "none": set()}


def test_a_new_split_for_other_disease_gives_validation_and_test_both_kinds_of_every_class(tmp_path):
    sources = [Source(f"{kind}-{i}", "dicom", [tmp_path / kind / str(i)]) for kind in KINDS for i in range(3)]
    present = {s.key: frozenset(KINDS[s.patient_id.rsplit("-", 1)[0]]) for s in sources}
    parts = split_sources(sources, present, tmp_path / "splits.json", ["pe", "other"])
    for name in ("val", "test"):  # three of each kind at 5:3:2: one of each in every split
        assert sorted(s.patient_id.rsplit("-", 1)[0] for s in parts[name]) == sorted(KINDS), name
    assert json.loads((tmp_path / "splits.json").read_text())["val"] == sorted(s.patient_id for s in parts["val"])
    # stratified by PE alone (the split a PE model gets), seed 0 leaves the test split without a
    # patient free of other disease: its specificity for that class would be undefined
    by_pe = split_sources(sources, present, tmp_path / "pe-splits.json", ["pe"])
    assert len(by_pe["test"]) == 2 and all("other" in present[s.key] for s in by_pe["test"])
    with pytest.raises(ManifestError, match=r"validation split \(2 series\) has only series with other disease"):
        check_validation_has("other", by_pe["test"], present)


def test_a_validation_split_without_other_disease_is_refused_before_training(lesions, tmp_path):
    manifest, _, splits = lesions
    sources = {s.patient_id: s for s in load_manifest(manifest)}
    val = splits["test"][:1] + splits["val"][1:]  # PE without other disease, and a normal patient
    moved = {"train": splits["train"] + splits["val"][:1], "val": val, "test": splits["test"][1:] + splits["test"][:1]}
    moved["test"] = [p for p in moved["test"] if p not in val]
    (tmp_path / "splits.json").write_text(json.dumps(moved))
    assert not any("other" in mask_classes(sources[p]) for p in val)
    out = tmp_path / "run"
    with pytest.raises(ManifestError, match=r"has no series with other disease in its mask"):
        run_manifest_segmentation(ManifestSegPlan(manifest, tmp_path / "splits.json", pixel_mm=3.0, patch=32),
                                  [SegTrainConfig(model="resunet", width=0.125, steps=1, classes=("pe", "other"))], out)
    assert not list(out.glob("*.pt"))  # refused before any training
