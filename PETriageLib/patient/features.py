"""Per-slice features for the patient classifiers, from the two stage models.

``scores``: each stage's logit (2 values per slice). ``embeddings``: the logits plus each
stage's pooled branch features, the vector its last layer classifies (window-fusion models
only). Stage 2 runs on every slice with lung here, not only on those stage 1 passes: the
patient classifier decides from the whole series.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

FEATURE_KINDS = ("scores", "embeddings")


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind must be one of {FEATURE_KINDS}, got {kind!r}")


def stage_feature_size(model: torch.nn.Module, kind: str) -> int:
    """Features one stage adds per slice."""
    _check_kind(kind)
    if kind == "scores":
        return 1
    if not hasattr(model, "branch_features"):
        raise ValueError(f"{getattr(model, 'name', type(model).__name__)} has no pooled branch features; "
                         "use feature kind 'scores' with this architecture")
    return 1 + model.fc.in_features


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
        pooled = torch.cat(model.branch_features(x), dim=1)
        logit = model.fc(pooled)  # the model's own logit (dropout is off in eval)
        out[i:i + len(x)] = torch.cat([logit, pooled], dim=1).float().cpu().numpy()
    return out


def slice_features(models: Sequence[torch.nn.Module], images: Sequence[np.ndarray], kind: str,
                   batch_size: int = 32) -> np.ndarray:
    """(N, F) features of N slices: stage 1's then stage 2's, each from its own preprocessed images."""
    parts = [stage_features(m, im, kind, batch_size) for m, im in zip(models, images)]
    if len({len(p) for p in parts}) != 1:
        raise ValueError(f"the stages got different slice counts: {[len(p) for p in parts]}")
    return np.concatenate(parts, axis=1)


def feature_names(models: Sequence[torch.nn.Module], kind: str) -> list[str]:
    """Column names, for the checkpoint (which features, in which order)."""
    names = []
    for n, m in enumerate(models, 1):
        names.append(f"stage{n}_logit")
        names += [f"stage{n}_f{i}" for i in range(stage_feature_size(m, kind) - 1)]
    return names
