"""ResUnet and FUSA-ResUnet: U-Nets whose encoder blocks are residual blocks.

FUSA-ResUnet follows "Full Scale Attention" (FUSA): four encoder stages, each a residual block
whose residual branch ends in a FUSA module (models/attention.py), max pooling between stages,
a plain U-Net decoder (upsample, concatenate the skip, two convs). The plain ResUnet is the same
network without the attention, the paper's comparator.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from PETriageLib.models.attention import make_attention
from PETriageLib.models.seg_base import DEFAULT_CLASSES, SegmentationNet

BASE = (32, 64, 128, 256)  # encoder widths at width 1.0; a bridge at twice the last


def _width(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class ResEncoderBlock(nn.Module):
    """conv-bn-relu-conv-bn, optional attention on that branch, 1x1 shortcut, relu."""

    def __init__(self, cin: int, cout: int, attention: str = "none") -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.attention = make_attention(attention, cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if cin != cout \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.attention is not None:
            out = self.attention(out)
        return F.relu(out + self.shortcut(x))


class DecoderBlock(nn.Module):
    """Upsample x2 (bilinear), concatenate the skip, two conv-bn-relu."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(cin + skip, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class ResEncoder(nn.Module):
    """Four residual stages with max pooling between, then a bridge block: returns the skips and
    the bridge (the deepest features, which CPMN aligns and classifies)."""

    def __init__(self, in_channels: int, width: float = 1.0, attention: str = "none") -> None:
        super().__init__()
        chans = [_width(c, width) for c in BASE]
        self.channels = chans
        self.stages = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.stages.append(ResEncoderBlock(cin, c, attention))
            cin = c
        self.bridge = ResEncoderBlock(cin, 2 * cin, "none")
        self.out_channels = 2 * cin

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        return skips, self.bridge(x)


class UNetDecoder(nn.Module):
    """U-Net decoder over a ``ResEncoder``'s skips -> (N, ``out_channels``, H, W) logits."""

    def __init__(self, encoder: ResEncoder, out_channels: int = 1) -> None:
        super().__init__()
        chans = encoder.channels
        blocks, cin = [], encoder.out_channels
        for c in reversed(chans):
            blocks.append(DecoderBlock(cin, c, c))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, out_channels, 1)

    def forward(self, skips: Sequence[torch.Tensor], bridge: torch.Tensor) -> torch.Tensor:
        x = bridge
        for block, skip in zip(self.blocks, reversed(skips)):
            x = block(x, skip)
        return self.head(x)


class ResUnet(SegmentationNet):
    """ResUnet (``attention="none"``) or FUSA-ResUnet (``attention="fusa"``); one output channel per
    lesion class (``classes``: the embolus by default, "other" for other lung disease as the FUSA
    paper segments COVID-19 lesions)."""

    def __init__(self, name: str, windows: Sequence[str], width: float = 1.0, attention: str = "none",
                 classes: Sequence[str] = DEFAULT_CLASSES) -> None:
        super().__init__(name, windows, {"width": float(width)}, classes)
        self.encoder = ResEncoder(self.in_channels, width, attention)
        self.decoder = UNetDecoder(self.encoder, len(self.classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x, (h, w) = self.padded(x)
        skips, bridge = self.encoder(x)
        return self.decoder(skips, bridge)[..., :h, :w]
