"""CPMN-style cross-phase model: PE classification and embolus segmentation on non-contrast CT.

Follows "Cross-Phase Mutual Learning Framework for Pulmonary Embolism Identification on
Non-Contrast CT Scans" (CPMN): two pathways of the same shape, one for the CT pulmonary angiogram
(CTPA), one for the non-contrast CT (NCT) of the same patient, each a ResUnet encoder
(models/resunet.py) with a U-Net decoder (segmentation) and a pooled linear head (classification).
Training sees both phases and pulls the NCT features towards the CTPA ones (IFA loss,
models/cpmn_losses.py); inference runs the NCT pathway alone: ``forward(nct)`` is that pathway's
segmentation logits, so CPMN predicts like any other segmentation model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from PETriageLib.models.resunet import ResEncoder, UNetDecoder
from PETriageLib.models.seg_base import SegmentationNet


@dataclass
class PathwayOutput:
    seg_logits: torch.Tensor  # (N, 1, H, W)
    class_logits: torch.Tensor  # (N, 1)
    features: torch.Tensor  # (N, F, H/16, W/16): the encoder's deepest map (IFA and IFD act on it)


class Pathway(nn.Module):
    """One phase's encoder, decoder and classification head."""

    def __init__(self, in_channels: int, width: float, attention: str) -> None:
        super().__init__()
        self.encoder = ResEncoder(in_channels, width, attention)
        self.decoder = UNetDecoder(self.encoder)
        self.classifier = nn.Linear(self.encoder.out_channels, 1)

    def forward(self, x: torch.Tensor) -> PathwayOutput:
        skips, bridge = self.encoder(x)
        return PathwayOutput(self.decoder(skips, bridge), self.classifier(bridge.mean(dim=(2, 3))), bridge)


class CPMN(SegmentationNet):
    """Dual-pathway model; ``forward(nct)`` = NCT segmentation logits, ``forward_pair`` = both pathways."""

    task = "cross_phase"

    def __init__(self, name: str, windows: Sequence[str], width: float = 1.0, attention: str = "none") -> None:
        super().__init__(name, windows, {"width": float(width), "attention": attention})
        self.ctpa = Pathway(self.in_channels, width, attention)
        self.nct = Pathway(self.in_channels, width, attention)

    def _run(self, pathway: Pathway, x: torch.Tensor) -> PathwayOutput:
        self.check_input(x)
        x, (h, w) = self.padded(x)
        out = pathway(x)
        out.seg_logits = out.seg_logits[..., :h, :w]
        return out

    def forward_nct(self, nct: torch.Tensor) -> PathwayOutput:
        """The inference path: NCT only."""
        return self._run(self.nct, nct)

    def forward_pair(self, ctpa: torch.Tensor, nct: torch.Tensor) -> tuple[PathwayOutput, PathwayOutput]:
        """(CTPA output, NCT output) of paired slices of the same shape (training)."""
        if ctpa.shape != nct.shape:
            raise ValueError(f"paired CTPA {tuple(ctpa.shape)} and NCT {tuple(nct.shape)} slices differ in shape")
        return self._run(self.ctpa, ctpa), self._run(self.nct, nct)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_nct(x).seg_logits
