"""Embolus probability on the CT's own grid (phantom and a real series); masks of another grid refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from PETriageLib.errors import NotAnalysableError
from PETriageLib.ingest.load import load_series
from PETriageLib.models import build_model
from PETriageLib.models.seg_predict import clot_volume_ml, predict_embolus_probability


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


@pytest.fixture(scope="module")
def tiny_seg():
    torch.manual_seed(0)
    return build_model("fusa_resunet", width=0.125).eval()


@pytest.fixture(scope="module")
def small_phantom():
    from PETriageLib.phantom import generate_study

    return generate_study(5, matrix=96, slices=6, pe=True)


def test_probability_has_the_phantom_ct_geometry(tiny_seg, small_phantom) -> None:
    vol = small_phantom.volume
    for size in (None, 64):
        prob = predict_embolus_probability(tiny_seg, vol, input_size=size, batch_size=4)
        assert prob.shape == vol.hu.shape and prob.dtype == np.float32
        assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1


def test_probability_has_the_real_ct_geometry(tiny_seg, real_series_dir) -> None:
    vol = load_series(real_series_dir)
    prob = predict_embolus_probability(tiny_seg, vol, input_size=64, batch_size=16)
    assert prob.shape == vol.hu.shape
    assert prob.shape[1:] != (64, 64)  # brought back from the model's size to the slice's


def test_clot_volume_in_ml_from_mask_and_spacing(small_phantom) -> None:
    vol = small_phantom.volume
    mask = small_phantom.masks == 1
    expected = mask.sum() * np.prod(vol.spacing) / 1000.0
    assert mask.any() and clot_volume_ml(mask, vol) == pytest.approx(expected)
    box = np.zeros(vol.hu.shape, bool)
    box[0, :10, :10] = True  # 100 voxels
    assert clot_volume_ml(box, vol) == pytest.approx(100 * vol.spacing[0] * vol.spacing[1] * vol.spacing[2] / 1000)


def test_a_mask_of_another_grid_is_refused_with_the_reason(small_phantom) -> None:
    vol = small_phantom.volume
    with pytest.raises(NotAnalysableError, match="another geometry"):
        clot_volume_ml(np.zeros((vol.hu.shape[0], 64, 64), bool), vol)
