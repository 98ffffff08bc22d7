"""Per-slice features for the patient classifiers, from the two stage models.

``scores``: each stage's logit (2 values per slice). ``embeddings``: the logits plus each
stage's pooled branch features, the vector its last layer classifies (window-fusion models
only). ``multiscale``: the embeddings plus the average and maximum of earlier feature maps of
each branch (DRN layers 4-6, strides 8 and coarser receptive fields than the last map sees
alone), as in related work's multi-scale features. Stage 2 runs on every slice with lung here,
not only on those stage 1 passes: the patient classifier decides from the whole series.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

FEATURE_KINDS = ("scores", "embeddings", "multiscale")
MULTISCALE_LAYERS = ("layer4", "layer5", "layer6")  # DRN stages whose maps are pooled as well


def _check_kind(model: torch.nn.Module, kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind must be one of {FEATURE_KINDS}, got {kind!r}")
    name = getattr(model, "name", type(model).__name__)
    if kind != "scores" and not hasattr(model, "branch_features"):
        raise ValueError(f"{name} has no pooled branch features; use feature kind 'scores' with this architecture")
    if kind == "multiscale" and not all(hasattr(b, layer) for b in model.branches for layer in MULTISCALE_LAYERS):
        raise ValueError(f"{name}: multi-scale features need DRN branches ({', '.join(MULTISCALE_LAYERS)})")


def stage_feature_size(model: torch.nn.Module, kind: str) -> int:
    """Features one stage adds per slice."""
    _check_kind(model, kind)
    if kind == "scores":
        return 1
    size = 1 + model.fc.in_features
    if kind == "multiscale":  # avg + max of each hooked map, per branch: counted on a blank slice
        probe = next(model.parameters()).new_zeros((1, model.in_channels, model.min_size, model.min_size))
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            size += _pooled_maps(model, probe)[1].shape[1]
        model.train(was_training)
    return size


def _pooled_maps(model: torch.nn.Module, x: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
    """(pooled final features, pooled earlier maps) of one batch, through forward hooks."""
    maps: list[torch.Tensor] = []
    hooks = [getattr(b, layer).register_forward_hook(lambda _m, _i, out: maps.append(out))
             for b in model.branches for layer in MULTISCALE_LAYERS]
    try:
        pooled = torch.cat(model.branch_features(x), dim=1)
    finally:
        for h in hooks:
            h.remove()
    extra = torch.cat([torch.cat([m.mean(dim=(2, 3)), m.amax(dim=(2, 3))], dim=1) for m in maps], dim=1)
    return pooled, extra


@torch.inference_mode()
def stage_features(model: torch.nn.Module, images: np.ndarray, kind: str, batch_size: int = 32,
                   device: "torch.device | str" = "cpu") -> np.ndarray:
    """(N, stage_feature_size) float32: the logit first, then the pooled features if asked for.

    ``model`` must already be on ``device``.
    """
    n_out = stage_feature_size(model, kind)
    model.eval()
    out = np.zeros((len(images), n_out), np.float32)
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[i:i + batch_size], np.float32)).to(device)
        if kind == "scores":
            out[i:i + len(x), 0] = model(x).float().reshape(-1).cpu().numpy()
            continue
        if kind == "multiscale":
            pooled, extra = _pooled_maps(model, x)
        else:
            pooled, extra = torch.cat(model.branch_features(x), dim=1), x.new_zeros((len(x), 0))
        logit = model.fc(pooled)  # the model's own logit (dropout is off in eval)
        out[i:i + len(x)] = torch.cat([logit, pooled, extra], dim=1).float().cpu().numpy()
    return out


def slice_features(models: Sequence[torch.nn.Module], images: Sequence[np.ndarray], kind: str,
                   batch_size: int = 32) -> np.ndarray:
    """(N, F) features of N slices: stage 1's then stage 2's, each from its own preprocessed images."""
    parts = [stage_features(m, im, kind, batch_size) for m, im in zip(models, images)]
    if len({len(p) for p in parts}) != 1:
        raise ValueError(f"the stages got different slice counts: {[len(p) for p in parts]}")
    return np.concatenate(parts, axis=1)
