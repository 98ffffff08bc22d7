"""What every PETriage model shares: name, window names, a rebuildable config, input checks."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


class SliceClassifier(nn.Module):
    """Binary slice classifier: (N, C, H, W) window channels -> (N, 1) logits.

    ``name`` and ``config`` rebuild the model: ``build_model(name, windows=windows, **config)``.
    """

    min_size = 64

    def __init__(self, name: str, windows: Sequence[str], config: dict[str, Any]) -> None:
        super().__init__()
        if not windows:
            raise ValueError(f"{name}: at least one window is needed")
        self.name = name
        self.windows = tuple(str(w) for w in windows)
        self.config = dict(config)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != len(self.windows):
            raise ValueError(
                f"{self.name} expects (N, {len(self.windows)}, H, W) for windows {self.windows}, "
                f"got shape {tuple(x.shape)}"
            )
        if min(x.shape[2], x.shape[3]) < self.min_size:
            raise ValueError(f"{self.name}: input {tuple(x.shape[2:])} is smaller than {self.min_size} px")

    def branch_layers(self) -> dict[str, nn.Module]:
        """Window name (or "all") -> that branch's last feature block, for Grad-CAM."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, windows={self.windows}, config={self.config}"
