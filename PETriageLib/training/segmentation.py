"""A small training loop for embolus segmentation (Dice + BCE), and CPMN's cross-phase mode.

``train_segmentation``: any segmentation model of the registry on ``SegSlices`` (training/seg_data.py).
``train_cross_phase``: CPMN on CTPA/NCT pairs: segmentation (Dice + BCE) and classification (BCE of
"this slice has embolus") on both pathways, plus ``ifa_weight`` * IFA (NCT features pulled towards
the detached CTPA ones) and ``ifd_weight`` * IFD (embolus vs background features, both pathways).
The ablations of the paper are the switches ``ifa`` / ``ifd`` (no IFA, no IFD, neither).
Full-batch-free, in memory, CPU-sized: meant for phantoms and small labelled sets, not a cohort.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from PETriageLib.models.cpmn import CPMN
from PETriageLib.models.cpmn_losses import dice_bce_loss, ifa_loss, ifd_loss
from PETriageLib.models.registry import build_model, model_task
from PETriageLib.models.seg_base import DEFAULT_CLASSES, SegmentationNet, lesion_classes
from PETriageLib.training.seg_data import SegSlices

log = logging.getLogger(__name__)


@dataclass
class SegTrainConfig:
    model: str = "fusa_resunet"
    width: float = 0.25
    steps: int = 150
    batch_size: int = 8
    lr: float = 3e-3
    seed: int = 0
    ifa: bool = True  # cross-phase only: the ablation switches
    ifd: bool = True
    ifa_weight: float = 1.0
    ifd_weight: float = 0.1
    ifd_margin: float = 1.0
    classes: tuple[str, ...] = DEFAULT_CLASSES  # lesion classes, one output channel each (ResUnet family)

    @property
    def ablation(self) -> str:
        return {(True, True): "full", (False, True): "no IFA", (True, False): "no IFD"}.get((self.ifa, self.ifd),
                                                                                            "neither")


@dataclass
class SegTrainResult:
    model: SegmentationNet
    config: SegTrainConfig
    losses: list[float] = field(default_factory=list)  # per step, the total loss


def _batches(n: int, batch_size: int, steps: int, rng: np.random.Generator):
    order = np.array([], int)
    for _ in range(steps):
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        yield order[:batch_size]
        order = order[batch_size:]


def _setup(data: SegSlices, config: SegTrainConfig, task: str) -> tuple[SegmentationNet, torch.optim.Optimizer]:
    if model_task(config.model) != task:
        raise ValueError(f"model {config.model!r} does {model_task(config.model)}, not {task}")
    if len(data) == 0 or not data.mask.any():
        raise ValueError("no training slice has a lesion of the model's classes: nothing to learn")
    classes = lesion_classes(config.classes)
    if data.mask.shape[1] != len(classes):
        raise ValueError(f"the training masks have {data.mask.shape[1]} channel(s), the model {len(classes)} "
                         f"lesion class(es) {list(classes)}")
    torch.manual_seed(config.seed)
    extra = {"classes": list(classes)} if classes != DEFAULT_CLASSES else {}
    model = build_model(config.model, windows=data.windows, width=config.width, **extra).train()
    return model, torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)


def train_segmentation(data: SegSlices, config: SegTrainConfig = SegTrainConfig()) -> SegTrainResult:
    """Train ``config.model`` (a segmentation model) on slices and masks; eval mode on return."""
    model, opt = _setup(data, config, "segmentation")
    x_all, m_all = torch.from_numpy(data.x), torch.from_numpy(data.mask).float()
    result = SegTrainResult(model, config)
    for step, idx in enumerate(_batches(len(data), config.batch_size, config.steps,
                                        np.random.default_rng(config.seed))):
        loss = dice_bce_loss(model(x_all[idx]), m_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        result.losses.append(float(loss.detach()))
        if step % 50 == 0:
            log.info("step %d: loss %.4f", step, float(loss.detach()))
    model.eval()
    return result


def cross_phase_loss(model: CPMN, ctpa: torch.Tensor, nct: torch.Tensor, mask: torch.Tensor,
                     config: SegTrainConfig) -> torch.Tensor:
    """CPMN's training loss on one batch of paired slices (see the module text)."""
    out_ctpa, out_nct = model.forward_pair(ctpa, nct)
    label = mask.amax(dim=(1, 2, 3)).unsqueeze(1)
    loss = dice_bce_loss(out_ctpa.seg_logits, mask) + dice_bce_loss(out_nct.seg_logits, mask)
    loss = loss + F.binary_cross_entropy_with_logits(out_ctpa.class_logits, label) \
        + F.binary_cross_entropy_with_logits(out_nct.class_logits, label)
    if config.ifa:
        loss = loss + config.ifa_weight * ifa_loss(out_nct.features, out_ctpa.features)
    if config.ifd:
        loss = loss + config.ifd_weight * (ifd_loss(out_ctpa.features, mask, config.ifd_margin)
                                           + ifd_loss(out_nct.features, mask, config.ifd_margin))
    return loss


def train_cross_phase(data: SegSlices, config: SegTrainConfig = SegTrainConfig(model="cpmn")) -> SegTrainResult:
    """Train CPMN on CTPA/NCT pairs (``data.nct`` set); the returned model predicts from NCT alone."""
    if data.nct is None or data.nct.shape != data.x.shape:
        raise ValueError("cross-phase training needs the NCT rendering of every slice (SegSlices.nct)")
    model, opt = _setup(data, config, "cross_phase")
    ctpa, nct = torch.from_numpy(data.x), torch.from_numpy(data.nct)
    masks = torch.from_numpy(data.mask).float()
    result = SegTrainResult(model, config)
    for step, idx in enumerate(_batches(len(data), config.batch_size, config.steps,
                                        np.random.default_rng(config.seed))):
        loss = cross_phase_loss(model, ctpa[idx], nct[idx], masks[idx], config)
        opt.zero_grad()
        loss.backward()
        opt.step()
        result.losses.append(float(loss.detach()))
        if step % 50 == 0:
            log.info("step %d (%s): loss %.4f", step, config.ablation, float(loss.detach()))
    model.eval()
    return result


@torch.no_grad()
def predict_slices(model: SegmentationNet, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Embolus probabilities (N, 1, H, W) of window-channel slices (N, C, H, W); NCT for CPMN."""
    model.eval()
    out = [torch.sigmoid(model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])))).numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)
