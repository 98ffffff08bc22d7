"""The epoch loop both series models train with: shuffled padded batches, feature noise, AdamW,
validation after each epoch, the best epoch's weights kept, early stopping."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch

from PETriageLib.models.series_nets import pad_batch

log = logging.getLogger(__name__)

# loss(logits of the batch, mask of its real slices, indices of its series in the training list)
BatchLoss = Callable[[torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor]
# validate(model) -> (score to maximise, metrics for the history row)
Validate = Callable[[torch.nn.Module], "tuple[float, dict]"]


def fit_series_model(model: torch.nn.Module, feats: Sequence[torch.Tensor], cfg, batch_loss: BatchLoss,
                     validate: Validate, name: str, progress: bool = False,
                     tag: "dict | None" = None) -> "tuple[dict, list[dict]]":
    """Train ``model`` (standardised already) in place; it ends with the weights of its best epoch,
    in eval mode. Returns (that epoch's history row, every row). ``tag`` opens every row."""
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_score, best_state, history, stale = None, None, None, [], 0
    epochs = range(1, cfg.epochs + 1)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc=name, unit="epoch")
    for epoch in epochs:
        model.train()
        losses = []
        order = rng.permutation(len(feats))
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            x, mask = pad_batch([feats[i] for i in idx])
            if cfg.noise:
                x = x + torch.randn_like(x) * cfg.noise * model.scale
            loss = batch_loss(model(x, mask), mask, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        score, metrics = validate(model)
        row = {**(tag or {}), "epoch": epoch, "train_loss": float(np.mean(losses)), **metrics}
        history.append(row)
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(loss=f"{row['train_loss']:.3f}", **{k: f"{v:.3f}" for k, v in metrics.items()})
        if best is None or score > best_score:
            best, best_score, stale = dict(row), score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("%s: no better validation AUROC for %d epochs: stopping at epoch %d", name, stale, epoch)
                break
    model.load_state_dict(best_state)
    model.eval()
    return best, history
