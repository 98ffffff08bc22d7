"""What every PETriage model shares: name, window names, a rebuildable config, input checks."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


class SliceClassifier(nn.Module):
    """Binary slice classifier: (N, C, H, W) window channels -> (N, 1) logits.

    ``name`` and ``config`` rebuild the model: ``build_model(name, windows=windows, **config)``.
    ``config["context"]`` = c > 0 (slice context): each window comes as 2c + 1 channels, the
    slices k - c .. k + c around the classified slice k, so C = len(windows) * (2c + 1).
    """

    min_size = 64

    def __init__(self, name: str, windows: Sequence[str], config: dict[str, Any]) -> None:
        super().__init__()
        if not windows:
            raise ValueError(f"{name}: at least one window is needed")
        self.name = name
        self.windows = tuple(str(w) for w in windows)
        self.config = dict(config)
        self.context = int(self.config.get("context", 0))
        if self.context < 0:
            raise ValueError(f"{name}: context must be >= 0 slices, got {self.context}")

    @property
    def slices_per_window(self) -> int:
        return 2 * self.context + 1

    @property
    def in_channels(self) -> int:
        return len(self.windows) * self.slices_per_window

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            extra = f" with {self.context} slice(s) of context each side" if self.context else ""
            raise ValueError(
                f"{self.name} expects (N, {self.in_channels}, H, W) for windows {self.windows}{extra}, "
                f"got shape {tuple(x.shape)}"
            )
        if min(x.shape[2], x.shape[3]) < self.min_size:
            raise ValueError(f"{self.name}: input {tuple(x.shape[2:])} is smaller than {self.min_size} px")

    def branch_layers(self) -> dict[str, nn.Module]:
        """Window name (or "all") -> that branch's last feature block, for Grad-CAM."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, windows={self.windows}, config={self.config}"
