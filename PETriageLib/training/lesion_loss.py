"""Auxiliary lesion-map loss: a 1 x 1 convolution over the branches' feature maps learns, per
map cell, whether the cell holds a lesion (stage 1: any; stage 2: PE).

Slice labels say only *that* a slice is diseased; the mask says *where*. Supervising the
feature maps with it teaches small lesions from far fewer patients. The head exists only
during training (it is saved in ``last.pt`` for resuming, not in ``best.pt``): the shipped
model, its inference and Grad-CAM are those of the plain classifier.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Lesion cells are a few percent of a map; weigh them up so the head does not settle on "none".
LESION_POS_WEIGHT = 10.0


class LesionMapHead(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.conv(torch.cat(list(maps), dim=1))


def head_for(model: nn.Module) -> LesionMapHead:
    """The head for a multi-window model; other models have no feature maps to supervise."""
    if not hasattr(model, "branch_maps") or not hasattr(model, "branches"):
        raise ValueError(f"the lesion-map loss needs a window-fusion model (DRN/CBAMDRN/FUSA family); "
                         f"{getattr(model, 'name', type(model).__name__)} has no branch feature maps")
    return LesionMapHead(sum(b.out_channels for b in model.branches))


def lesion_map_loss(logits: torch.Tensor, lesion_maps: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
    """BCE between the head's (N, 1, h, w) logits and the lesion maps (N, H, W) in [0, 1].

    A cell's target is the largest lesion fraction inside it, so a clot of one input pixel
    still marks its cell. Slices without a mask (``has_mask`` False) do not count.
    """
    if not bool(has_mask.any()):
        return logits.sum() * 0.0
    target = F.adaptive_max_pool2d(lesion_maps.unsqueeze(1).float(), logits.shape[-2:]).clamp_(0.0, 1.0)
    keep = has_mask.bool()
    weight = torch.tensor([LESION_POS_WEIGHT], device=logits.device)
    return F.binary_cross_entropy_with_logits(logits[keep].float(), target[keep], pos_weight=weight)
