"""An embolus segmentation head on the cascade's backbone (DRN per window branch, models/fusion.py).

The cascade's classifier pools each branch's stride-8 feature map; this model keeps the maps, and
a light decoder (3x3 conv, 1x1 conv to one logit, bilinear upsampling) turns them into a per-pixel
embolus map at the input size. ``load_backbone`` starts it from a trained cascade classifier of the
same architecture, so a segmentation model can reuse what stage 1 or 2 learnt.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from PETriageLib.models.base import SliceClassifier
from PETriageLib.models.drn import build_drn
from PETriageLib.models.seg_base import SegmentationNet


class DRNSegNet(SegmentationNet):
    """Branch i (a DRN on window i) -> stride-8 maps, concatenated -> light decoder -> (N, 1, H, W)."""

    stride = 1  # the decoder upsamples to the exact input size: no padding needed

    def __init__(self, name: str, windows: Sequence[str], variant: str = "drn_d22", attention: str = "cbam",
                 width: float = 1.0, hidden: int = 32) -> None:
        super().__init__(name, windows, {"width": float(width), "hidden": int(hidden)})
        self.branches = nn.ModuleList(build_drn(variant, width, 1, attention) for _ in self.windows)
        features = sum(b.out_channels for b in self.branches)
        self.decoder = nn.Sequential(
            nn.Conv2d(features, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        maps = [branch(x[:, i : i + 1]) for i, branch in enumerate(self.branches)]
        logits = self.decoder(torch.cat(maps, dim=1))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def load_backbone(self, classifier: SliceClassifier) -> None:
        """Copy a cascade classifier's branch weights (same DRN variant, width and windows)."""
        if tuple(classifier.windows) != self.windows:
            raise ValueError(f"classifier windows {classifier.windows} differ from {self.windows}")
        branches = getattr(classifier, "branches", None)
        if branches is None or len(branches) != len(self.branches):
            raise ValueError(f"{classifier.name} has no DRN branch per window to copy")
        for mine, theirs in zip(self.branches, branches):
            mine.load_state_dict(theirs.state_dict(), strict=True)
