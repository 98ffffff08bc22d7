"""Batch augmentation in torch: rotation, translation, zoom, flips, HU noise and HU shift.

Inputs are windowed channels in [-1, 1]; HU noise/shift are converted per channel through
each window's width so "10 HU" means the same thing in every window. Pixels moved in from
outside the image get each window's value of air (-1024 HU), as the preprocessing pads.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from PETriageLib.ingest.volume import AIR_HU
from PETriageLib.preprocess.windows import Window, get_window


@dataclass
class AugmentConfig:
    rotation_deg: float = 10.0
    translate: float = 0.06  # max shift as a fraction of the image size
    zoom_min: float = 0.9
    zoom_max: float = 1.1
    hflip: float = 0.5  # probability of a left-right flip
    vflip: float = 0.0
    hu_noise: float = 8.0  # std of Gaussian noise, HU
    hu_shift: float = 15.0  # max absolute global shift, HU

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "AugmentConfig":
        return cls(**{k: float(v) for k, v in d.items() if k in cls.__dataclass_fields__})


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def augment_batch(x: torch.Tensor, windows: Sequence["str | Window | Mapping"], cfg: AugmentConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """Return an augmented copy of x (N, C, H, W); random draws come only from ``generator``."""
    return augment_with_maps(x, None, windows, cfg, generator)[0]


def augment_with_maps(x: torch.Tensor, maps: "torch.Tensor | None", windows: Sequence["str | Window | Mapping"],
                      cfg: AugmentConfig, generator: torch.Generator) -> "tuple[torch.Tensor, torch.Tensor | None]":
    """Augment x and move per-pixel maps (N, H, W), e.g. lesion masks, with the same geometry.

    The maps get the rotation, zoom, shift and flips but no noise; outside the image they are 0.
    The random draws are those of ``augment_batch``, so both give the same images.
    """
    n, c = x.shape[:2]
    wins = [get_window(w) for w in windows]
    if len(wins) != c:
        raise ValueError(f"{c} channels but {len(wins)} windows")
    width = torch.tensor([w.width for w in wins], dtype=x.dtype).view(1, c, 1, 1)
    air = torch.tensor([float(w.apply(float(AIR_HU))) for w in wins], dtype=x.dtype).view(1, c, 1, 1)

    angle = _uniform(n, -cfg.rotation_deg, cfg.rotation_deg, generator) * math.pi / 180.0
    scale = 1.0 / _uniform(n, cfg.zoom_min, cfg.zoom_max, generator)  # grid scale is inverse zoom
    sx = torch.where(torch.rand(n, generator=generator) < cfg.hflip, -1.0, 1.0)
    sy = torch.where(torch.rand(n, generator=generator) < cfg.vflip, -1.0, 1.0)
    tx = _uniform(n, -2 * cfg.translate, 2 * cfg.translate, generator)  # grid units span 2
    ty = _uniform(n, -2 * cfg.translate, 2 * cfg.translate, generator)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # grid_sample pads with zeros: shift so that zero is air, then shift back.
    out = F.grid_sample(x - air, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + air
    moved = None
    if maps is not None:
        moved = F.grid_sample(maps.unsqueeze(1).to(x.dtype), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False).squeeze(1)

    hu = torch.randn(out.shape, generator=generator, dtype=out.dtype) * cfg.hu_noise
    hu += _uniform(n, -cfg.hu_shift, cfg.hu_shift, generator).view(n, 1, 1, 1).to(out.dtype)
    return (out + hu * (2.0 / width)).clamp_(-1.0, 1.0), moved
