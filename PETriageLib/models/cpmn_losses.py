"""Losses of segmentation training and CPMN's cross-phase terms.

- ``dice_bce_loss``: soft Dice + binary cross-entropy of embolus logits against a 0/1 mask.
- ``ifa_loss`` (inter-feature alignment): MSE between the NCT and CTPA pathways' features, the CTPA
  side detached, so only the NCT pathway is pulled towards the contrast phase and not the reverse.
- ``ifd_loss`` (intra-feature discrepancy): a hinge on the distance between the mean embolus and the
  mean background feature vectors within one pathway: zero once they are ``margin`` apart, and zero
  for a batch without embolus pixels (there is nothing to separate).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, mask: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the batch, pooled per channel (slices without lesions do not divide by
    zero) and averaged over the channels, so that a large lesion class does not drown a small one."""
    prob = torch.sigmoid(logits)
    dims = [d for d in range(prob.ndim) if d != 1]
    inter = (prob * mask).sum(dim=dims)
    return (1.0 - (2.0 * inter + eps) / (prob.sum(dim=dims) + mask.sum(dim=dims) + eps)).mean()


def dice_bce_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if logits.shape != mask.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and mask {tuple(mask.shape)} differ in shape")
    mask = mask.float()
    return dice_loss(logits, mask) + F.binary_cross_entropy_with_logits(logits, mask)


def ifa_loss(nct_features: torch.Tensor, ctpa_features: torch.Tensor) -> torch.Tensor:
    """Mean squared difference, gradient to the NCT features only."""
    if nct_features.shape != ctpa_features.shape:
        raise ValueError(f"NCT features {tuple(nct_features.shape)} and CTPA features "
                         f"{tuple(ctpa_features.shape)} differ in shape")
    return F.mse_loss(nct_features, ctpa_features.detach())


def ifd_loss(features: torch.Tensor, mask: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """relu(margin - ||mean embolus feature - mean background feature||) over the batch.

    ``mask`` (N, 1, H, W) is brought to the feature grid by area averaging; a feature cell counts as
    embolus by its embolus fraction (soft weights, so a small clot still weighs in at stride 16)."""
    weight = F.adaptive_avg_pool2d(mask.float(), features.shape[-2:])  # (N, 1, h, w) in [0, 1]
    fg, bg = weight.sum(), (1 - weight).sum()
    if fg <= 0 or bg <= 0:
        return features.sum() * 0.0  # keeps the graph, adds nothing
    mean_fg = (features * weight).sum(dim=(0, 2, 3)) / fg
    mean_bg = (features * (1 - weight)).sum(dim=(0, 2, 3)) / bg
    return F.relu(margin - torch.linalg.vector_norm(mean_fg - mean_bg))
