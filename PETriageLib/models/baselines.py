"""Baselines from the seed papers' tables, built from torchvision (no pretrained weights).

Each is a single network over all window channels: the first conv is replaced by one with
C = len(windows) input channels and the head gives one logit. torchvision is imported where a
baseline is built, not with the registry: importing it costs about 160 MB of memory (it loads
torch's compiler stack), which a triage with the CBAMDRN cascade does not need.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from PETriageLib.models.base import SliceClassifier


def _adapt_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                     padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None)


class ResNet50(SliceClassifier):
    """torchvision ResNet-50 with a C-channel stem and a 1-logit head."""

    def __init__(self, name: str, windows: Sequence[str], config: dict, dropout: float = 0.0) -> None:
        super().__init__(name, windows, config)
        from torchvision import models as tvm

        net = tvm.resnet50(weights=None, num_classes=1)
        net.conv1 = _adapt_conv(net.conv1, len(self.windows))
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, 1))
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(x)

    def branch_layers(self) -> dict[str, nn.Module]:
        return {"all": self.net.layer4}


class MultiScaleResNet50(ResNet50):
    """ResNet-50 whose stage 3, 4 and 5 features are pooled and concatenated before the head."""

    def __init__(self, name: str, windows: Sequence[str], config: dict, dropout: float = 0.0) -> None:
        super().__init__(name, windows, config, dropout)
        self.net.fc = nn.Identity()  # the multi-scale head below replaces it
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(512 + 1024 + 2048, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        c3 = n.layer2(n.layer1(x))
        c4 = n.layer3(c3)
        c5 = n.layer4(c4)
        pooled = [self.pool(f).flatten(1) for f in (c3, c4, c5)]
        return self.head(torch.cat(pooled, dim=1))


class EfficientNetB5(SliceClassifier):
    """torchvision EfficientNet-B5 with a C-channel stem and a 1-logit head."""

    def __init__(self, name: str, windows: Sequence[str], config: dict, dropout: float = 0.4) -> None:
        super().__init__(name, windows, config)
        from torchvision import models as tvm

        net = tvm.efficientnet_b5(weights=None, num_classes=1, dropout=dropout)
        net.features[0][0] = _adapt_conv(net.features[0][0], len(self.windows))
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(x)

    def branch_layers(self) -> dict[str, nn.Module]:
        return {"all": self.net.features[-1]}
