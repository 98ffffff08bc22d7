"""Segmentation training on phantom clots: a tiny model learns; the NCT rendering keeps the CTPA
geometry; the cross-phase loss and its ablations; CPMN predicts from the NCT pathway alone."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from PETriageLib.models.cpmn_losses import ifa_loss
from PETriageLib.phantom import FINDING_CODES, generate_study
from PETriageLib.phantom.anatomy import TISSUES
from PETriageLib.preprocess.contrast_phase import measure_contrast_phase
from PETriageLib.training.seg_data import nct_rendering, phantom_seg_slices
from PETriageLib.training.seg_eval import evaluate_segmentation
from PETriageLib.training.segmentation import (SegTrainConfig, cross_phase_loss, predict_slices,
                                               train_cross_phase, train_segmentation)


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


@pytest.fixture(scope="module")
def pairs():
    # 4 easy PE phantoms, central 48 px (where central and lobar clots lie), with their NCT renderings
    return phantom_seg_slices([0, 1, 2, 3], slices=24, crop=48, pairs=True, negative_seeds=[10])


def test_nct_rendering_keeps_geometry_and_removes_contrast() -> None:
    study = generate_study(1, matrix=64, slices=10, pe=True, difficulty="easy")
    nct = nct_rendering(study)
    assert nct.hu.shape == study.volume.hu.shape and nct.spacing == study.volume.spacing
    assert nct.origin == study.volume.origin and np.array_equal(nct.direction, study.volume.direction)
    clot = study.masks == FINDING_CODES["pe"]
    artery = (study.tissues == TISSUES["artery"]) & ~clot
    assert np.median(study.volume.hu[artery]) > 150  # opacified
    core = artery & (study.volume.hu > 150)  # the opacified lumen, not the distal partial-volume voxels
    assert abs(np.median(nct.hu[core]) - 42) <= 10  # native blood
    assert measure_contrast_phase(nct).phase == "non_contrast"  # the blood pool no longer looks enhanced
    assert abs(np.median(nct.hu[clot]) - 57) <= 1  # clot a little denser than blood
    lung = study.tissues == TISSUES["lung"]
    assert np.array_equal(nct.hu[lung & ~clot], study.volume.hu[lung & ~clot])  # the rest untouched


def test_slices_and_masks_line_up(pairs) -> None:
    assert pairs.x.shape == pairs.nct.shape == (len(pairs), 2, 48, 48)
    assert pairs.mask.shape == (len(pairs), 1, 48, 48) and pairs.mask.any()
    negative = pairs.patient == 4  # seed 10, no PE
    assert negative.sum() == 2 and not pairs.mask[negative].any()


def test_a_tiny_model_learns_to_segment_phantom_clots(pairs) -> None:
    data = replace(pairs, nct=None)
    untrained = train_segmentation(data, SegTrainConfig(model="resunet", width=0.125, steps=1, lr=0.0))
    trained = train_segmentation(data, SegTrainConfig(model="resunet", width=0.125, steps=150, lr=1e-2))
    before = evaluate_segmentation(predict_slices(untrained.model, data.x), data.mask).overall.dice
    after = evaluate_segmentation(predict_slices(trained.model, data.x), data.mask).overall.dice
    assert np.mean(trained.losses[-10:]) < 0.6 * np.mean(trained.losses[:10])
    assert after > before + 0.1, (before, after)


def test_ablations_switch_exactly_their_terms(pairs) -> None:
    torch.manual_seed(0)
    result = train_cross_phase(pairs, SegTrainConfig(model="cpmn", width=0.125, steps=2))
    model = result.model.train()
    idx = np.flatnonzero(pairs.mask.any(axis=(1, 2, 3)))[:4]
    ctpa, nct = torch.from_numpy(pairs.x[idx]), torch.from_numpy(pairs.nct[idx])
    mask = torch.from_numpy(pairs.mask[idx]).float()
    model.eval()  # fixed batch norm statistics: the terms can be compared exactly
    with torch.no_grad():
        full = cross_phase_loss(model, ctpa, nct, mask, SegTrainConfig(ifd_weight=0.0))
        no_ifa = cross_phase_loss(model, ctpa, nct, mask, SegTrainConfig(ifa=False))
        neither = cross_phase_loss(model, ctpa, nct, mask, SegTrainConfig(ifa=False, ifd=False))
        ifa = ifa_loss(model.forward_nct(nct).features, model.ctpa(ctpa).features)
    assert ifa.item() > 0
    assert full.item() - neither.item() == pytest.approx(ifa.item(), rel=1e-4)
    assert no_ifa.item() >= neither.item()
    assert SegTrainConfig(ifa=False, ifd=False).ablation == "neither"
    assert SegTrainConfig(ifa=False).ablation == "no IFA"


def test_cpmn_infers_from_the_nct_pathway_alone(pairs) -> None:
    model = train_cross_phase(pairs, SegTrainConfig(model="cpmn", width=0.125, steps=2)).model
    before = predict_slices(model, pairs.nct[:4])
    with torch.no_grad():
        for p in model.ctpa.parameters():
            p.add_(1.0)
    assert np.array_equal(predict_slices(model, pairs.nct[:4]), before)
    with torch.no_grad():
        model.nct.decoder.head.bias.add_(1.0)
    assert not np.array_equal(predict_slices(model, pairs.nct[:4]), before)


def test_wrong_inputs_are_refused(pairs) -> None:
    with pytest.raises(ValueError, match="NCT rendering"):
        train_cross_phase(replace(pairs, nct=None))
    with pytest.raises(ValueError, match="does segmentation, not cross_phase"):
        train_cross_phase(pairs, SegTrainConfig(model="resunet"))
    empty = replace(pairs, mask=np.zeros_like(pairs.mask), nct=None)
    with pytest.raises(ValueError, match="nothing to learn"):
        train_segmentation(empty)
