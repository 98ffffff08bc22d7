"""Attention blocks that plug into a residual branch: CBAM (Woo et al. 2018) and FUSA.

Both take a feature map (N, C, H, W) and return a gated map of the same shape. They are
applied on the residual branch, before the shortcut is added (see ``drn.py``).
"""
from __future__ import annotations

import torch
from torch import nn


def _hidden(channels: int, reduction: int) -> int:
    # Narrow test models have 8-16 channels: keep at least 4 hidden units in the MLP.
    return max(4, channels // reduction)


class ChannelPool(nn.Module):
    """Shared-MLP channel descriptor: MLP(avgpool(x)) + MLP(maxpool(x)) -> (N, C, 1, 1) logits."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = torch.mean(x, dim=(2, 3), keepdim=True)
        mx = torch.amax(x, dim=(2, 3), keepdim=True)
        return self.mlp(avg) + self.mlp(mx)


class SpatialPool(nn.Module):
    """Spatial descriptor: 7x7 conv over the channel mean and max -> (N, 1, H, W) logits."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.conv(pooled)


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate on the result."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelPool(channels, reduction)
        self.spatial = SpatialPool(kernel_size)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.channel(x))

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.spatial(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_gate(x)
        return x * self.spatial_gate(x)


class FUSA(nn.Module):
    """Full Scale Attention: channel and spatial maps expanded to the feature shape,
    concatenated and fused by a 1x1 conv + sigmoid into one full-size gate."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelPool(channels, reduction)
        self.spatial = SpatialPool(kernel_size)
        self.fuse = nn.Conv2d(2 * channels, channels, 1, bias=True)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([self.channel(x).expand_as(x), self.spatial(x).expand_as(x)], dim=1)
        return torch.sigmoid(self.fuse(maps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


ATTENTION = {"none": None, "cbam": CBAM, "fusa": FUSA}


def make_attention(kind: str, channels: int) -> "nn.Module | None":
    """Attention module for ``channels`` features, or None for ``kind == "none"``."""
    try:
        cls = ATTENTION[kind]
    except KeyError:
        raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(ATTENTION)}") from None
    return None if cls is None else cls(channels)
