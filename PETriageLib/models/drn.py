"""Dilated Residual Networks (Yu, Koltun, Funkhouser 2017), C and D variants.

Eight stages; stages 2-4 halve the resolution and stages 5-6 dilate (2, 4) instead, so the
output stride is 8. DRN-C keeps residual blocks in stages 1-2 and ends with two residual
blocks without shortcuts (dilation 2, 1) that undo gridding; DRN-D replaces the first two
stages and the last two by plain conv layers ("degridding"). An optional attention module
(CBAM or FUSA) gates each residual branch before the shortcut add. A width multiplier
scales every stage for fast CPU variants. The backbone returns the last feature map;
pooling is the caller's job (adaptive, so any input size works).
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn

from PETriageLib.models.attention import make_attention

BASE_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
# Per stage: (stride, dilation). Stages 5-6 trade stride for dilation -> output stride 8.
STAGE_GEOMETRY = ((1, 1), (2, 1), (2, 1), (2, 1), (1, 2), (1, 4), (1, 2), (1, 1))


@dataclass(frozen=True)
class DRNSpec:
    arch: str  # "C" or "D"
    bottleneck: bool
    layers: tuple[int, ...]  # blocks per stage, 8 stages


DRN_SPECS: dict[str, DRNSpec] = {
    "drn_c26": DRNSpec("C", False, (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_c42": DRNSpec("C", False, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d22": DRNSpec("D", False, (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d38": DRNSpec("D", False, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d54": DRNSpec("D", True, (1, 1, 3, 4, 6, 3, 1, 1)),
}


def scaled(channels: int, width: float) -> int:
    """Channels times width, rounded to a multiple of 8 (at least 8)."""
    return max(8, int(channels * width + 4) // 8 * 8)


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(conv3x3(cin, cout, stride, dilation), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """What every DRN block shares: attention on the residual branch, then the shortcut add.

    Subclasses build their convs, then call ``_finish``, and define ``branch``.
    """

    expansion = 1

    def _finish(self, cin: int, cout: int, stride: int, residual: bool, attention: str) -> None:
        self.relu = nn.ReLU(inplace=True)
        self.attention = make_attention(attention, cout)
        self.residual = residual
        self.downsample = _shortcut(cin, cout, stride) if residual else None

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.attention is not None:
            out = self.attention(out)
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs; ``residual=False`` drops the shortcut (DRN-C degridding blocks)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: tuple[int, int] = (1, 1),
                 residual: bool = True, attention: str = "none") -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = conv3x3(cin, planes, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, cout, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(cout)
        self._finish(cin, cout, stride, residual, attention)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (dilated), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: tuple[int, int] = (1, 1),
                 residual: bool = True, attention: str = "none") -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self._finish(cin, cout, stride, residual, attention)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def _shortcut(cin: int, cout: int, stride: int) -> "nn.Module | None":
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class DRN(nn.Module):
    """DRN backbone: (N, in_channels, H, W) -> feature map (N, out_channels, ceil(H/8), ceil(W/8))."""

    def __init__(self, spec: DRNSpec, width: float = 1.0, in_channels: int = 1, attention: str = "none") -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        ch = [scaled(c, width) for c in BASE_CHANNELS]
        self.layer0 = nn.Sequential(
            nn.Conv2d(in_channels, ch[0], 7, padding=3, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True)
        )
        cin = ch[0]
        prev_dilation = 1
        for i, (blocks, (stride, dilation)) in enumerate(zip(spec.layers, STAGE_GEOMETRY)):
            plain = spec.arch == "D" and i in (0, 1, 6, 7)
            if plain:  # DRN-D stem and degridding stages: plain conv layers
                mods = [conv_bn_relu(cin if b == 0 else ch[i], ch[i], stride if b == 0 else 1, dilation)
                        for b in range(blocks)]
                cout = ch[i]
            else:
                block = Bottleneck if spec.bottleneck and 2 <= i <= 5 else BasicBlock
                residual = not (i >= 6)  # DRN-C degridding blocks have no shortcut
                mods = []
                for b in range(blocks):
                    first = prev_dilation if b == 0 and i < 6 else dilation  # ease into the new dilation
                    mods.append(block(cin, ch[i], stride if b == 0 else 1, (first, dilation), residual, attention))
                    cin = ch[i] * block.expansion
                cout = cin
            setattr(self, f"layer{i + 1}", nn.Sequential(*mods))
            cin, prev_dilation = cout, dilation
        self.out_channels = cin
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer0(x)
        for i in range(1, 9):
            x = getattr(self, f"layer{i}")(x)
        return x

    @property
    def last_block(self) -> nn.Module:
        """The module whose output is the final feature map (Grad-CAM target)."""
        return self.layer8


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_drn(variant: str, width: float = 1.0, in_channels: int = 1, attention: str = "none") -> DRN:
    """Backbone by variant name (a key of ``DRN_SPECS``)."""
    try:
        spec = DRN_SPECS[variant]
    except KeyError:
        raise ValueError(f"unknown DRN variant {variant!r}; known: {', '.join(DRN_SPECS)}") from None
    return DRN(spec, width=width, in_channels=in_channels, attention=attention)


__all__ = ["DRN", "DRNSpec", "DRN_SPECS", "BasicBlock", "Bottleneck", "build_drn", "scaled"]
