"""The window branches run as one grouped network compute what the sequential branches compute."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from support.batchnorm import randomize_batchnorm

from PETriageLib.models import build_model
from PETriageLib.models.fast import FastOptions, optimize_model
from PETriageLib.models.fused_branches import CannotFuse, FusedWindowNet, fuse_branches


@pytest.mark.parametrize("config", [{"width": 0.125}, {"width": 0.125, "pool": "avgmax", "context": 1}])
def test_fused_equals_sequential_on_random_weights(config):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("cbamdrn_d22", ("vascular", "lung"), **config)).eval()
    fused = fuse_branches(model)
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.groups >= 2 for c in convs), "every convolution is grouped over the branches"
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (3, model.in_channels, 64, 64)).astype(np.float32))
    with torch.inference_mode():
        ref, out = model(x), fused(x)
    assert out.shape == ref.shape == (3, 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    # the branches are not interchangeable: swapping the windows changes the logits
    with torch.inference_mode():
        k = model.slices_per_window
        swapped = fused(torch.cat([x[:, k:], x[:, :k]], dim=1))
    assert (swapped - ref).abs().max() > 1e-3


def test_fused_shipped_checkpoint_matches_and_folds():
    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.models.zoo import resolve_model

    model, meta = load_checkpoint(*resolve_model("cbamdrn_d22_demo_stage1"))
    model.eval()
    size = int(meta["input_size"])
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (2, model.in_channels, size, size))
                         .astype(np.float32))
    fast, mode = optimize_model(fuse_branches(model), "cpu", FastOptions(bf16=False))
    assert mode == "fold_bn+channels_last"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    with torch.inference_mode():
        p_ref, p_fused = torch.sigmoid(model(x)), torch.sigmoid(fast(x))
    assert float((p_ref - p_fused).abs().max()) < 1e-4


def test_models_without_a_grouped_form_are_refused():
    with pytest.raises(CannotFuse, match="FUSA"):
        fuse_branches(build_model("fusadrn_d22", ("vascular", "lung"), width=0.125).eval())
    with pytest.raises(CannotFuse, match="one branch"):
        FusedWindowNet(build_model("cbamdrn_d22", ("lung",), width=0.125).eval())
    with pytest.raises(CannotFuse, match="not a window fusion"):
        fuse_branches(build_model("resnet50", ("vascular", "lung")).eval())
    with pytest.raises(ValueError, match="eval"):
        fuse_branches(build_model("cbamdrn_d22", ("vascular", "lung"), width=0.125).train())


def test_fast_path_with_fused_branches_checks_against_the_unfused_model():
    from PETriageLib.models.fast import DEFAULT_TOLERANCE, FastPredictor

    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("cbamdrn_d22", ("vascular", "lung"), width=0.125)).eval()
    images = np.random.default_rng(3).uniform(-1, 1, (4, 2, 64, 64)).astype(np.float32)
    predictor = FastPredictor(model, "cpu", FastOptions(fuse_branches=True), batch_size=4)
    probs = predictor(images)
    assert predictor.mode.startswith("fused+fold_bn") and not predictor.fallback
    assert predictor.reference is model  # the check is against the sequential fp32 model
    with torch.inference_mode():
        ref = torch.sigmoid(model(torch.from_numpy(images))).reshape(-1).numpy()
    assert np.abs(probs - ref).max() <= DEFAULT_TOLERANCE
    gated, _ = optimize_model(model, "cpu", FastOptions(fuse_branches=True, bf16=True, fp32_gates=True))
    assert any(type(m).__name__ == "Float32Module" and type(m.inner).__name__ == "GroupedCBAM"
               for m in gated.modules()), "the grouped gates stay fp32 too"
    assert optimize_model(build_model("resnet50", ("vascular", "lung")).eval(), "cpu",
                          FastOptions(fuse_branches=True, bf16=False))[1] == "fold_bn+channels_last"
