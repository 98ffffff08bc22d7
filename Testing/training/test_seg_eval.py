"""Segmentation scores on hand-made masks: pixel Dice, lesion-wise detection, classes, patients."""
from __future__ import annotations

import numpy as np
import pytest

from PETriageLib.training.seg_eval import evaluate_segmentation, lesion_class_table, segmentation_table


def masks():
    ref = np.zeros((3, 20, 20), np.uint8)
    ref[0, 2:4, 2:4] = 1  # lesion A: 4 px, small
    ref[0, 10:17, 10:17] = 1  # lesion B: 49 px, large
    pred = np.zeros((3, 20, 20), np.float32)
    pred[0, 10:17, 10:14] = 0.9  # half-ish of B: 28 px
    pred[2, 0:2, 0:2] = 0.8  # a false positive on slice 2 (4 px), patient 1
    return pred, ref


def test_pixel_and_lesion_scores() -> None:
    pred, ref = masks()
    ev = evaluate_segmentation(pred, ref, patient=[0, 0, 1])
    o = ev.overall
    assert o.lesions == 2 and o.found == 1 and o.lesion_sensitivity == 0.5
    assert o.precision == pytest.approx(28 / 32) and o.recall == pytest.approx(28 / 53)
    assert o.dice == pytest.approx(2 * 28 / (32 + 53))
    assert ev.false_positive_components == 1
    assert set(ev.by_class) == {"small", "large"}
    assert ev.by_class["small"].found == 0 and np.isnan(ev.by_class["small"].precision)
    assert ev.by_class["large"].precision == 1.0 and ev.by_class["large"].recall == pytest.approx(28 / 49)
    # patient 0 has emboli and a call; patient 1 none and a false call
    assert (ev.patients_positive, ev.true_positive_patients, ev.patients_negative, ev.true_negative_patients) \
        == (1, 1, 1, 0)
    assert ev.patient_sensitivity == 1.0 and ev.patient_specificity == 0.0
    # a 4-pixel false positive is ignored at the patient level with min_pixels=5
    assert evaluate_segmentation(pred, ref, patient=[0, 0, 1], min_pixels=5).patient_specificity == 1.0


def test_threshold_and_slice_connectivity() -> None:
    pred, ref = masks()
    assert evaluate_segmentation(pred, ref, threshold=0.95).overall.found == 0
    vol = np.zeros((2, 8, 8), np.uint8)
    vol[:, 3:5, 3:5] = 1  # one tube across two slices
    assert evaluate_segmentation(vol.astype(float), vol).overall.lesions == 2
    assert evaluate_segmentation(vol.astype(float), vol, per_slice=False).overall.lesions == 1


def test_tables_have_one_row_per_model_and_class() -> None:
    pred, ref = masks()
    ev = evaluate_segmentation(pred, ref, patient=[0, 0, 1])
    table = segmentation_table([("resunet", ev), ("fusa_resunet", ev)])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| resunet | 65.9 | 87.5 | 52.8 | 1/2 | 1 | 100.0 | 0.0 |")
    assert "| small | 0.0 | n/a | 0.0 | 0/1 |" in lesion_class_table(ev)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_segmentation(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
