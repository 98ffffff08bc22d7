"""The window branches of a ``WindowFusionNet`` run as one grouped network instead of one after
the other.

Branch i of a fusion model sees input channels i*k .. i*k + k - 1, which is exactly what group i
of a grouped convolution sees. So every Conv2d of the branches becomes one Conv2d with
``groups = branches x its groups`` (weights concatenated along the output channels), every
BatchNorm2d one wider BatchNorm2d, and each CBAM one ``GroupedCBAM`` whose spatial gate pools
over each branch's channels only. The result computes the same function (to float rounding)
with one kernel call per layer on a wider tensor: with width 0.25 (16-128 channels) one call
keeps the cores busier than two narrow ones. Models this does not know (FUSA gates, torchvision
backbones) raise ``CannotFuse``; the caller keeps the sequential branches.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from PETriageLib.models.attention import CBAM
from PETriageLib.models.drn import DRN, ResidualBlock
from PETriageLib.models.fusion import WindowFusionNet

_STATELESS = (nn.ReLU, nn.Identity, nn.Dropout, nn.Sigmoid)
# Containers whose forward only chains their children and adds per-channel tensors, so that
# grouping their children groups them. A module that mixes channels itself (FUSA's spatial
# pool, a channel mean) is not one of them.
_CHANNELWISE_CONTAINERS = (nn.Sequential, ResidualBlock, DRN)


class CannotFuse(ValueError):
    """The branches hold a module that has no grouped equivalent here."""


def grouped_conv(convs: Sequence[nn.Conv2d]) -> nn.Conv2d:
    """One Conv2d computing ``convs`` side by side on the concatenated channels."""
    c = convs[0]
    shape = (c.kernel_size, c.stride, c.padding, c.dilation, c.groups, c.bias is None, c.padding_mode)
    if any((o.kernel_size, o.stride, o.padding, o.dilation, o.groups, o.bias is None, o.padding_mode) != shape
           for o in convs):
        raise CannotFuse("branch convolutions differ in shape")
    g = len(convs)
    out = nn.Conv2d(c.in_channels * g, c.out_channels * g, c.kernel_size, c.stride, c.padding, c.dilation,
                    groups=c.groups * g, bias=c.bias is not None, padding_mode=c.padding_mode)
    with torch.no_grad():
        out.weight.copy_(torch.cat([o.weight for o in convs]))
        if c.bias is not None:
            out.bias.copy_(torch.cat([o.bias for o in convs]))
    return out.to(c.weight.dtype)


def grouped_batchnorm(bns: Sequence[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    b = bns[0]
    out = nn.BatchNorm2d(b.num_features * len(bns), b.eps, b.momentum, b.affine, b.track_running_stats)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(b, name) is not None:
                getattr(out, name).copy_(torch.cat([getattr(o, name) for o in bns]))
    return out.eval()


class GroupedCBAM(nn.Module):
    """``groups`` CBAM gates side by side on (N, groups x C, H, W).

    The channel MLPs are grouped 1x1 convolutions; the spatial gate's mean and max are taken
    over each group's channels and its 7x7 convolution is grouped too."""

    def __init__(self, gates: Sequence[CBAM]) -> None:
        super().__init__()
        self.groups = len(gates)
        mlps = [g.channel.mlp for g in gates]
        self.mlp = nn.Sequential(grouped_conv([m[0] for m in mlps]), nn.ReLU(inplace=True),
                                 grouped_conv([m[2] for m in mlps]))
        self.spatial = nn.Sequential(grouped_conv([g.spatial.conv[0] for g in gates]),
                                     _group(list(g.spatial.conv[1] for g in gates)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = torch.mean(x, dim=(2, 3), keepdim=True)
        mx = torch.amax(x, dim=(2, 3), keepdim=True)
        x = x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        n, c, h, w = x.shape
        parts = x.reshape(n, self.groups, c // self.groups, h, w)
        # per group [mean, max]: the channel order the grouped 7x7 convolution expects
        pooled = torch.stack([parts.mean(dim=2), parts.amax(dim=2)], dim=2).reshape(n, 2 * self.groups, h, w)
        gate = torch.sigmoid(self.spatial(pooled))  # (N, groups, H, W)
        return (parts * gate.unsqueeze(2)).reshape(n, c, h, w)


def _group(modules: list[nn.Module]) -> nn.Module:
    """The grouped equivalent of corresponding modules of each branch."""
    first = modules[0]
    if any(type(m) is not type(first) for m in modules):
        raise CannotFuse("branches differ in structure")
    if isinstance(first, nn.Conv2d):
        return grouped_conv(modules)
    if isinstance(first, nn.BatchNorm2d):
        return grouped_batchnorm(modules)
    if isinstance(first, CBAM):
        return GroupedCBAM(modules)
    if isinstance(first, _STATELESS):
        return copy.deepcopy(first)
    if not isinstance(first, _CHANNELWISE_CONTAINERS):
        raise CannotFuse(f"no grouped form of {type(first).__name__}")
    children = [dict(m.named_children()) for m in modules]
    if any(c.keys() != children[0].keys() for c in children):
        raise CannotFuse("branches differ in structure")
    # A container (Sequential, residual block, DRN): same forward, grouped children.
    grouped = copy.copy(first)
    grouped._modules = dict(first._modules)
    for name in children[0]:
        grouped._modules[name] = _group([c[name] for c in children])
    return grouped


class FusedWindowNet(nn.Module):
    """``WindowFusionNet`` with its branches as one grouped backbone; same logits."""

    def __init__(self, model: WindowFusionNet) -> None:
        super().__init__()
        if len(model.branches) < 2:
            raise CannotFuse("one branch: nothing to fuse")
        self.groups = len(model.branches)
        self.backbone = _group(list(model.branches))
        self.pool_kind = model.pool_kind
        self.fc = copy.deepcopy(model.fc)
        self.in_channels = model.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone(x)
        pools = []
        for part in fmap.chunk(self.groups, dim=1):  # branch i's map, as WindowFusionNet pools it
            pools.append(part.mean(dim=(2, 3)))
            if self.pool_kind == "avgmax":
                pools.append(part.amax(dim=(2, 3)))
        return self.fc(torch.cat(pools, dim=1))


def fuse_branches(model: nn.Module) -> FusedWindowNet:
    """The grouped form of an eval-mode ``WindowFusionNet`` (``CannotFuse`` for other models)."""
    if not isinstance(model, WindowFusionNet):
        raise CannotFuse(f"{type(model).__name__} is not a window fusion model")
    if model.training:
        raise ValueError("fuse_branches needs an eval-mode model")
    return FusedWindowNet(model).eval()
