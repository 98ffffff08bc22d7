"""What every segmentation model shares: window channels in, per-pixel embolus logits out.

A ``SegmentationNet`` is a ``SliceClassifier`` as far as the registry and checkpoints go (name,
windows, rebuildable config, input checks), so ``save_checkpoint`` / ``load_checkpoint`` keep their
digest and strict-load checks; only its output differs: (N, 1, H, W) logits at the input size.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from PETriageLib.models.base import SliceClassifier

SEG_CLASS_NAMES = ["background", "embolus"]


class SegmentationNet(SliceClassifier):
    """(N, C, H, W) window channels -> (N, 1, H, W) embolus logits; any H, W >= ``min_size``."""

    task = "segmentation"
    min_size = 16
    stride = 16  # inputs are padded to a multiple of this and the output cropped back

    def __init__(self, name: str, windows: Sequence[str], config: dict) -> None:
        super().__init__(name, windows, config)

    def padded(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``x`` padded (replicate) at the bottom/right to a multiple of ``stride``, and its size."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    def branch_layers(self) -> dict:
        return {}
