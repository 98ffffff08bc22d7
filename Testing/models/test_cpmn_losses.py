"""CPMN losses: IFA pulls the NCT pathway only; IFD vanishes without emboli; Dice + BCE."""
from __future__ import annotations

import pytest
import torch

from PETriageLib.models import build_model
from PETriageLib.models.cpmn_losses import dice_bce_loss, ifa_loss, ifd_loss


def test_ifa_is_zero_for_identical_features_and_positive_otherwise() -> None:
    f = torch.randn(2, 8, 4, 4)
    assert ifa_loss(f, f.clone()).item() == 0.0
    assert ifa_loss(f + 1.0, f).item() == pytest.approx(1.0)


def test_ifa_gradient_reaches_the_nct_pathway_only() -> None:
    torch.manual_seed(0)
    model = build_model("cpmn", width=0.125).train()
    ctpa_out, nct_out = model.forward_pair(torch.randn(2, 2, 32, 32), torch.randn(2, 2, 32, 32))
    loss = ifa_loss(nct_out.features, ctpa_out.features)
    assert loss.item() > 0
    loss.backward()
    assert all(p.grad is None for p in model.ctpa.parameters())
    encoder_grads = [p.grad for p in model.nct.encoder.parameters()]
    assert all(g is not None for g in encoder_grads)
    assert sum(g.abs().sum().item() for g in encoder_grads) > 0


def test_ifd_is_zero_without_embolus_pixels_and_keeps_the_graph() -> None:
    f = torch.randn(2, 8, 4, 4, requires_grad=True)
    loss = ifd_loss(f, torch.zeros(2, 1, 64, 64))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(f.grad) == 0


def test_ifd_penalises_embolus_features_that_look_like_background() -> None:
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :16, :16] = 1  # exactly feature cell (0, 0) at stride 16
    same = torch.ones(1, 8, 4, 4, requires_grad=True)
    loss = ifd_loss(same, mask, margin=1.0)
    assert loss.item() == pytest.approx(1.0)  # no distance at all: the full margin
    loss.backward()
    apart = torch.zeros(1, 8, 4, 4)
    apart[..., 0, 0] = 1.0  # embolus cell 1 per channel from the background: distance sqrt(8) > margin
    assert ifd_loss(apart, mask, margin=1.0).item() == 0.0


def test_dice_bce_prefers_the_right_mask() -> None:
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:8, 4:8] = 1
    good = (mask * 2 - 1) * 10
    assert dice_bce_loss(good, mask).item() < 0.05 < dice_bce_loss(-good, mask).item()
    with pytest.raises(ValueError, match="differ in shape"):
        dice_bce_loss(good, mask[..., :8])
