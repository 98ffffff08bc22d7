"""Grad-CAM heatmaps per window branch (pytorch-grad-cam), mapped back into the series geometry.

Each branch's last feature block (``model.branch_layers()``) is a Grad-CAM target, so a DWL
model gives one map for the vascular branch and one for the lung branch, from one forward and
one backward pass. Only the target layers' parameters keep ``requires_grad`` while maps are
computed: the maps are the same and the backward pass is about 3x cheaper with 6x less memory
(measured on DRN-D-22 DWL). Hooks are released afterwards.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.preprocess.slices import prepare_slices
from PETriageLib.progress import Progress, raise_if_cancelled

log = logging.getLogger(__name__)

@contextmanager
def only_trainable(model: Any, layers: Sequence[Any]) -> Iterator[None]:
    """Freeze every parameter except those of ``layers``; restore the previous flags afterwards."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    keep = {id(p) for layer in layers for p in layer.parameters()}
    try:
        # A parameter-free target layer needs the graph above it, so then freeze nothing.
        if all(any(True for _ in layer.parameters()) for layer in layers):
            for p in params:
                p.requires_grad_(id(p) in keep)
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def _per_layer_gradcam(model: Any, layers: list) -> Any:
    """pytorch-grad-cam's GradCAM, returning one map per target layer instead of their mean."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image

    class PerLayerGradCAM(GradCAM):
        def aggregate_multi_layers(self, cam_per_target_layer: list) -> np.ndarray:
            # Each entry is (N, 1, H, W); rescale each as GradCAM does for a single layer.
            return np.stack([scale_cam_image(np.maximum(c[:, 0], 0)) for c in cam_per_target_layer], axis=1)

    return PerLayerGradCAM(model, layers)


def branch_heatmaps(model: Any, images: np.ndarray, branches: Sequence[str] | None = None,
                    batch_size: int = 4, target_class: int = 1,
                    progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Grad-CAM of the positive logit per branch: {branch: float32 (N, H, W) in [0, 1]}.

    One forward and one backward per batch serve every branch: all branch layers are hooked
    at once and each gets its own map.
    """
    import torch
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    layers = model.branch_layers()
    names = list(layers) if branches is None else list(branches)
    unknown = [b for b in names if b not in layers]
    if unknown:
        raise ValueError(f"model {getattr(model, 'name', '?')} has no branch {unknown}; it has {list(layers)}")
    targets_layers = [layers[b] for b in names]
    device = next(model.parameters()).device
    was_training = model.training
    n = len(images)
    out = {b: np.zeros((n,) + tuple(images.shape[2:]), np.float32) for b in names}
    # Not GradCAM's context manager: its __exit__ swallows IndexError.
    cam = _per_layer_gradcam(model, targets_layers)
    try:
        with only_trainable(model, targets_layers), torch.inference_mode(False), torch.enable_grad():
            for s in range(0, n, batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).to(device)
                maps = cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(target_class)] * len(x))
                for i, b in enumerate(names):
                    out[b][s:s + len(x)] = maps[:, i]
                if progress:
                    progress(s + len(x), n, "Grad-CAM")
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return out


def heatmap_volume(model: Any, volume: CTVolume, indices: Sequence[int], config: Any, lungs: list | None = None,
                   branches: Sequence[str] | None = None, batch_size: int = 4,
                   progress: Progress | None = None,
                   cancel: Any = None) -> dict[str, np.ndarray]:
    """Heatmaps of the chosen slices as float32 volumes (k, j, i) in the series geometry.

    Each slice's map is placed back through its crop (``CropMap.to_slice``); slices not
    chosen, and pixels outside the crop, are zero. ``cancel`` is checked between chunks of
    slices (``progress.is_cancelled``) and raises ``progress.Cancelled``.
    """

    layers = model.branch_layers()
    names = list(layers) if branches is None else list(branches)
    vols = {b: np.zeros(volume.shape, np.float32) for b in names}
    indices = list(indices)
    if not indices:
        return vols
    slice_shape = tuple(volume.shape[1:])
    # Small chunks keep the preprocessed images as small as the Grad-CAM batches.
    chunk = max(batch_size, 8)
    for s in range(0, len(indices), chunk):
        raise_if_cancelled(cancel, "Grad-CAM", s, len(indices))
        idx = indices[s:s + chunk]
        prep = prepare_slices(volume, idx, config, lungs=lungs)
        maps = branch_heatmaps(model, prep.images, names, batch_size=batch_size)
        for b in names:
            for n, k in enumerate(idx):
                vols[b][k] = prep.crops[n].to_slice(maps[b][n], slice_shape)
        if progress:
            progress(s + len(idx), len(indices), "Grad-CAM")
    return vols
