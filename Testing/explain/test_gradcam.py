"""Grad-CAM per window branch: a known case, the real architecture, slice selection."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from torch import nn

from PETriageLib.explain.cam_slices import select_cam_slices
from PETriageLib.explain.gradcam import branch_heatmaps, heatmap_volume, only_trainable
from PETriageLib.preprocess.lungs import analyse_lungs
from PETriageLib.preprocess.slices import PreprocessConfig
from PETriageLib.models import build_model
from PETriageLib.triage.verdict import SliceRow

S = 64


class QuadrantMask(nn.Module):
    """Passes features of one quadrant only: the branch can only see that part of the image."""

    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x)
        mask[..., self.rows, self.cols] = 1.0
        return x * mask


class QuadrantNet(nn.Module):
    """Known case: two window branches, the vascular one decides on the top-right quadrant of
    its channel, the lung one on the bottom-left; logit = sum of the branch means."""

    def __init__(self) -> None:
        super().__init__()
        self.windows = ("vascular", "lung")
        self.name = "quadrant_net"
        half = S // 4  # feature maps are S/2 after the stride-2 stem
        quads = {"vascular": (slice(0, half), slice(half, None)), "lung": (slice(half, None), slice(0, half))}
        self.stems = nn.ModuleList(nn.Conv2d(1, 4, 3, stride=2, padding=1) for _ in self.windows)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), QuadrantMask(*quads[w])) for w in self.windows)
        with torch.no_grad():
            for m in list(self.stems) + [b[0] for b in self.blocks]:
                m.weight.fill_(1.0 / m.weight[0].numel())  # local averaging: features follow brightness
                m.bias.zero_()
            for m in self.stems:
                m.bias.fill_(1.0)  # inputs are in [-1, 1]: keep features positive so ReLU passes them

    def branch_layers(self) -> dict[str, nn.Module]:
        return dict(zip(self.windows, self.blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [blk(stem(x[:, i:i + 1])) for i, (stem, blk) in enumerate(zip(self.stems, self.blocks))]
        return sum(f.mean(dim=(1, 2, 3)) for f in feats).reshape(-1, 1)


def blob_images(n: int = 2) -> np.ndarray:
    """Dark images with one equally bright blob in every quadrant, in both channels."""
    x = np.full((n, 2, S, S), -1.0, np.float32)
    for r, c in ((10, 10), (10, 44), (44, 10), (44, 44)):
        x[:, :, r:r + 10, c:c + 10] = 1.0
    return x


def test_heatmap_maximum_falls_in_the_region_each_branch_decides_on():
    model = QuadrantNet()
    maps = branch_heatmaps(model, blob_images(3), batch_size=2)
    assert set(maps) == {"vascular", "lung"}
    for branch, (want_top, want_right) in {"vascular": (True, True), "lung": (False, False)}.items():
        heat = maps[branch]
        assert heat.shape == (3, S, S) and heat.dtype == np.float32
        for h in heat:
            r, c = np.unravel_index(int(np.argmax(h)), h.shape)
            assert (r < S // 2) == want_top and (c >= S // 2) == want_right, (branch, r, c)
            assert h.max() == pytest.approx(1.0, abs=1e-4)
            # The quadrants the branch cannot see stay (almost) cold.
            other = h[S // 2:, :S // 2] if want_top else h[:S // 2, S // 2:]
            assert other.max() < 0.05


def test_known_case_maps_back_into_the_right_part_of_the_slice(phantom_study):
    """Through the crop: model-space top-right must land in the top-right of the lung box."""
    vol = phantom_study.volume
    lungs = analyse_lungs(vol)
    k = [i for i, s in enumerate(lungs) if s.has_lung][3]
    vols = heatmap_volume(QuadrantNet(), vol, [k], PreprocessConfig(["vascular", "lung"], input_size=S), lungs=lungs)
    r0, r1, c0, c1 = lungs[k].box
    mid_r, mid_c = (r0 + r1) / 2, (c0 + c1) / 2
    for branch, (top, right) in {"vascular": (True, True), "lung": (False, False)}.items():
        heat = vols[branch]
        assert heat.shape == vol.shape and not np.delete(heat, k, axis=0).any()
        r, c = np.unravel_index(int(np.argmax(heat[k])), heat[k].shape)
        assert r0 <= r < r1 and c0 <= c < c1
        assert (r < mid_r) == top and (c >= mid_c) == right, (branch, r, c, lungs[k].box)


def test_real_architecture_gives_one_map_per_branch_and_restores_the_model():
    torch.manual_seed(0)
    model = build_model("cbamdrn_d22", ("vascular", "lung"), width=0.25).eval()
    flags = [p.requires_grad for p in model.parameters()]
    layers = model.branch_layers()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 2, S, S)).astype(np.float32)
    maps = branch_heatmaps(model, x, batch_size=1)
    assert set(maps) == {"vascular", "lung"}
    for heat in maps.values():
        assert heat.shape == (1, S, S)
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0 + 1e-6
    # One pass for both branches gives what pytorch-grad-cam gives for each branch alone.
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    for branch in ("vascular", "lung"):
        alone = GradCAM(model, [layers[branch]])
        try:
            ref = alone(input_tensor=torch.from_numpy(x), targets=[BinaryClassifierOutputTarget(1)])
        finally:
            alone.activations_and_grads.release()
        assert np.allclose(maps[branch], ref, atol=1e-5), branch
    model.zero_grad(set_to_none=True)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(not layer._forward_hooks for layer in layers.values())  # hooks released
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="no branch"):
        branch_heatmaps(model, x, branches=["mediastinal"])


def test_only_trainable_freezes_the_rest_and_restores_flags():
    model = QuadrantNet()
    target = model.blocks[1]
    with only_trainable(model, [target]):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {"blocks.1.0.weight", "blocks.1.0.bias"}
    with only_trainable(model, [target, nn.ReLU()]):  # a parameter-free layer: nothing frozen
        assert all(p.requires_grad for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def _rows(p_pe, p_disease):
    def label(pp, pd):
        if pd is None:
            return None
        return "wnl" if pp is None else ("pe" if pp >= 0.5 else "other")
    return [SliceRow(k, float(k), str(k), pd is not None, pd is not None, pd, pp, label(pp, pd))
            for k, (pp, pd) in enumerate(zip(p_pe, p_disease))]


def test_select_cam_slices_modes():
    rows = _rows([None, 0.9, 0.2, None, 0.6, None], [None, 0.8, 0.7, 0.3, 0.9, 0.45])
    assert select_cam_slices(rows, "top-k", 2) == [1, 4]
    assert select_cam_slices(rows, "top-k", 4) == [1, 2, 4, 5]  # then by p_disease: 0.45 > 0.3
    assert select_cam_slices(rows, "pe") == [1, 4]
    assert select_cam_slices(rows, "none") == []
    assert len(select_cam_slices(rows, "top-k", 50)) == 5  # slice 0 was not analysed
    with pytest.raises(ValueError, match="Grad-CAM mode"):
        select_cam_slices(rows, "all")
