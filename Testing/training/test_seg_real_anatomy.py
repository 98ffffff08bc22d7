"""Embolus segmentation on real-anatomy phantoms: training patches of both phases, per-clot-level
volume scores, the validation-chosen operating point, and inference at the trained pixel size."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from PETriageLib.models.registry import build_model
from PETriageLib.models.seg_predict import model_grid, predict_embolus_probability
from PETriageLib.phantom import FINDING_CODES
from PETriageLib.phantom.centrelines import LEVELS
from PETriageLib.training.seg_real_data import RealSegSpec, patch_slices, real_seg_studies
from PETriageLib.training.seg_volume_eval import (choose_operating_point, evaluate_volumes, level_table,
                                                  volume_table)
from PETriageLib.triage.embolus import embolus_result
from Testing.support.data_paths import CADPE_VESSELS

pytestmark = pytest.mark.skipif(not CADPE_VESSELS.is_dir(), reason=f"real CAD-PE masks not found at {CADPE_VESSELS}")

CASE = "e0485"  # the smallest case; 2 mm pixels and 5 mm slices keep this fast
SPEC = RealSegSpec(pixel_mm=2.0, slice_thickness=5.0)


@pytest.fixture(scope="module")
def studies():
    return real_seg_studies(CADPE_VESSELS, [(CASE, 7, True), (CASE, 8, False)], SPEC)


def test_clot_ids_match_the_pe_mask_and_levels(studies) -> None:
    pe = studies[0].ctpa
    assert pe.clot_ids is not None and pe.clot_ids.shape == pe.masks.shape
    assert np.array_equal(pe.clot_ids > 0, pe.masks == FINDING_CODES["pe"])
    assert len(pe.clot_levels) == int(pe.clot_ids.max()) >= 1 and set(pe.clot_levels) <= set(LEVELS)
    assert np.array_equal(studies[0].nct.clot_ids, pe.clot_ids)  # one geometry for both phases
    assert studies[1].ctpa.clot_ids.max() == 0 and not studies[1].has_pe


def test_patches_pair_the_phases_pixel_for_pixel(studies) -> None:
    data = patch_slices(studies, patch=32, seed=1)
    assert data.x.shape == data.nct.shape and data.x.shape[1:] == (2, 32, 32)
    assert data.mask.shape == (len(data), 1, 32, 32)
    pe_slices = int((studies[0].ctpa.masks == FINDING_CODES["pe"]).any(axis=(1, 2)).sum())
    with_clot = int(data.mask.any(axis=(1, 2, 3)).sum())
    assert with_clot >= pe_slices - 1  # every clot slice gives a patch that shows its clot (jitter may clip one)
    assert (~data.mask.any(axis=(1, 2, 3))).sum() >= 1  # negatives too
    assert not np.array_equal(data.x, data.nct)  # contrast removed in the NCT phase


def test_perfect_and_empty_predictions_score_as_they_must(studies) -> None:
    pe, neg = studies[0].ctpa, studies[1].ctpa
    truth = [(pe.clot_ids > 0).astype(np.float32), np.zeros(neg.masks.shape, np.float32)]
    ev = evaluate_volumes(truth, [pe, neg])
    assert ev.dice == 1.0 and ev.clots_found == ev.clots == len(pe.clot_levels)
    assert ev.sensitivity == 1.0 and ev.specificity == 1.0 and ev.fp_components == 0
    for level in LEVELS:
        n = pe.clot_levels.count(level)
        assert ev.levels[level].clots == ev.levels[level].found == n
    empty = evaluate_volumes([np.zeros_like(t) for t in truth], [pe, neg])
    assert empty.clots_found == 0 and empty.sensitivity == 0.0 and empty.specificity == 1.0
    # the negative patient with one false voxel blob is called positive, and the blob is an FP component
    blob = truth[1].copy()
    blob[2, 10:13, 10:13] = 1
    noisy = evaluate_volumes([truth[0], blob], [pe, neg])
    assert noisy.specificity == 0.0 and noisy.fp_components == 1
    table = volume_table([("perfect", ev)]) + level_table([("perfect", ev)])
    assert "| perfect | 100.0 | 100.0 | 100.0 |" in table and "subsegmental" in table


def test_one_clot_missed_is_counted_at_its_level(studies) -> None:
    pe = studies[0].ctpa
    prob = (pe.clot_ids > 1).astype(np.float32)  # all but clot 1
    ev = evaluate_volumes([prob], [pe])
    missed = pe.clot_levels[0]
    assert ev.levels[missed].found == pe.clot_levels.count(missed) - 1
    assert ev.clots_found == len(pe.clot_levels) - 1


def test_operating_point_drops_small_components_like_triage(studies) -> None:
    pe, neg = studies[0], studies[1]
    blob = np.zeros(neg.nct.masks.shape, np.float32)
    blob[2, 10:12, 10:12] = 0.99  # 4 voxels of 2 x 2 x 5 mm = 0.08 mL, above every grid threshold
    probs = [(pe.nct.clot_ids > 0).astype(np.float32), blob]
    point = choose_operating_point(probs, [pe.nct, neg.nct], min_sensitivity=1.0)
    assert point.sensitivity == 1.0 and point.specificity == 1.0 and point.min_component_ml > 0.08
    result = embolus_result("m", "nct", point.threshold, blob, neg.nct.volume, point.min_component_ml)
    assert not result.found and result.mask.sum() == 0  # triage drops the same blob
    kept = embolus_result("m", "nct", point.threshold, blob, neg.nct.volume, 0.0)
    assert kept.found and kept.volume_ml == pytest.approx(0.08)


def test_inference_resamples_to_the_trained_pixel_size(studies) -> None:
    volume = studies[0].ctpa.volume
    rows, cols = volume.hu.shape[1:]
    assert model_grid(volume, None, None) == (rows, cols)
    assert model_grid(volume, 64, None) == (64, 64)
    assert model_grid(volume, 64, 4.0) == (round(rows / 2), round(cols / 2))  # pixel size wins over input size
    model = build_model("resunet", windows=("vascular", "lung"), width=0.125).eval()
    small = replace(volume, hu=volume.hu[:3])
    prob = predict_embolus_probability(model, small, pixel_mm=4.0)
    assert prob.shape == small.hu.shape and 0.0 <= prob.min() <= prob.max() <= 1.0
