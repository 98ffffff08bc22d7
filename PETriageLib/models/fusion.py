"""Multi-window fusion: one backbone per window channel, pooled features concatenated, FC head.

One window = single-window model; two (vascular + lung) = DWL, the seed paper's best; three
(+ mediastinal) = TWL. The model takes ONE tensor with the windows as channels and splits it
inside ``forward``, so Grad-CAM and export see a single input.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from PETriageLib.models.base import SliceClassifier

POOLS = ("avg", "avgmax")


class WindowFusionNet(SliceClassifier):
    """Branch i sees window i only (one channel, or 2c + 1 with slice context c); its feature map
    is pooled; a linear layer fuses them.

    ``pool="avg"`` is the paper's global average pooling. ``"avgmax"`` concatenates the average
    and the maximum over the map: a lesion a few pixels wide (a subsegmental clot) moves the
    maximum but is diluted in the average of a 16 x 16 map.
    """

    def __init__(self, name: str, windows: Sequence[str], config: dict,
                 make_backbone: Callable[[], nn.Module], dropout: float = 0.0, pool: str = "avg") -> None:
        super().__init__(name, windows, config)
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        # A ModuleList, not a dict: window names need not be valid module names.
        self.branches = nn.ModuleList(make_backbone() for _ in self.windows)
        features = sum(b.out_channels for b in self.branches) * (2 if pool == "avgmax" else 1)
        self.pool_kind = pool
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, 1)

    def _pool(self, fmap: torch.Tensor) -> torch.Tensor:
        avg = fmap.mean(dim=(2, 3))
        if self.pool_kind == "avg":
            return avg
        return torch.cat([avg, fmap.amax(dim=(2, 3))], dim=1)

    def branch_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unpooled (N, F, h, w) feature maps of each branch, in window order."""
        self.check_input(x)
        k = self.slices_per_window  # branch i gets its window's slices: channels i*k .. i*k + k - 1
        return [branch(x[:, i * k : (i + 1) * k]) for i, branch in enumerate(self.branches)]

    def branch_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled (N, F) features of each branch, in window order."""
        return [self._pool(m) for m in self.branch_maps(x)]

    def classify(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Slice logits (N, 1) from ``branch_maps`` (training reuses the maps for the lesion-map loss)."""
        return self.fc(self.dropout(torch.cat([self._pool(m) for m in maps], dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.branch_maps(x))

    def branch_layers(self) -> dict[str, nn.Module]:
        return {w: b.last_block for w, b in zip(self.windows, self.branches)}
