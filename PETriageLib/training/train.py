"""Train one cascade stage: balanced sampling or weighted loss, augmentation, AdamW + schedule,
early stopping on the validation split, resumable checkpoints, operating threshold on val.

Determinism: each step seeds its own RNG from (seed, global step), and each epoch's sample
order from (seed, epoch), so a run resumed from ``last.pt`` continues exactly where the
interrupted one stopped.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from PETriageLib import __version__
from PETriageLib.models.checkpoint import check_digest, write_checkpoint
from PETriageLib.errors import CheckpointError
from PETriageLib.training.augment import AugmentConfig, augment_with_maps
from PETriageLib.training.cache import SliceDataset
from PETriageLib.vocabulary import STAGE_CLASSES
from PETriageLib.training.config import TrainConfig
from PETriageLib.training.metrics import auroc_ci, threshold_for_sensitivity
from PETriageLib.preprocess.windows import get_window

log = logging.getLogger(__name__)
LAST, BEST = "last.pt", "best.pt"


@dataclass
class TrainResult:
    best_path: Path
    threshold: float
    best_epoch: int
    history: list = field(default_factory=list)
    resumed_from: Optional[dict] = None  # {"epoch", "step"} when resumed


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1)


def epoch_order(dataset: SliceDataset, cfg: TrainConfig, epoch: int) -> np.ndarray:
    """Sample indices for one epoch: class-balanced draws or a shuffled pass."""
    rng = np.random.default_rng([cfg.seed, epoch])
    n = len(dataset)
    steps = cfg.steps_per_epoch or math.ceil(n / cfg.batch_size)
    if cfg.balance == "sampler":
        counts = np.bincount(dataset.targets, minlength=2).astype(float)
        weights = 1.0 / np.maximum(counts[dataset.targets], 1.0)
        return rng.choice(n, size=steps * cfg.batch_size, replace=True, p=weights / weights.sum())
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(steps * cfg.batch_size / n))])
    return order[: steps * cfg.batch_size]


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if cfg.amp == "auto" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: SliceDataset, batch_size: int = 64,
            device: "torch.device | str" = "cpu") -> np.ndarray:
    """Positive-class probability for every slice of ``dataset``."""
    model.eval()
    probs = []
    for start in range(0, len(dataset), batch_size):
        x, _ = dataset.batch(range(start, min(start + batch_size, len(dataset))))
        probs.append(torch.sigmoid(model(torch.from_numpy(x).to(device)).float()).squeeze(1).cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros(0)


def _validate(model, val: SliceDataset, cfg: TrainConfig, device) -> dict:
    p = predict(model, val, device=device)
    y = val.targets
    eps = 1e-7
    loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))) if len(y) else float("nan")
    auc = auroc_ci(y, p, n_boot=0)["auroc"]
    thr = threshold_for_sensitivity(y, p, cfg.sensitivity_target)
    pred = p >= thr
    return {"val_loss": loss, "val_auroc": auc, "threshold": thr, "val_acc_at_threshold": float((pred == y).mean()),
            "val_acc_at_0.5": float(((p >= 0.5) == y).mean())}


def _better(new: dict, best: Optional[dict]) -> bool:
    if best is None:
        return True
    key = lambda m: (m["val_auroc"] if m["val_auroc"] is not None else 0.0, -m["val_loss"])  # noqa: E731
    return key(new) > key(best)


def build_for_training(cfg: TrainConfig):
    """A fresh model, or the fine-tuning checkpoint's model (whose preprocessing must match cfg)."""
    from PETriageLib.models import build_model

    if not cfg.init_from:
        torch.manual_seed(cfg.seed)
        return build_model(cfg.architecture, cfg.windows, **cfg.model_config)
    from PETriageLib.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(cfg.init_from)
    names = [w["name"] if isinstance(w, dict) else w for w in meta.get("windows", [])]
    if names != [get_window(w).name for w in cfg.windows]:
        raise CheckpointError(f"{cfg.init_from}: trained with windows {names}; fine-tuning must use the same "
                              f"(use fine_tune_config)")
    if int(meta.get("input_size", -1)) != cfg.input_size:
        # Every registered model pools adaptively, so the weights run at any size: training on at a
        # larger size lets a model trained fast at a small one see finer detail.
        log.info("fine-tuning %s (trained at %s px) at %d px", cfg.init_from, meta.get("input_size"), cfg.input_size)
    if getattr(model, "context", 0) != cfg.context:
        model = with_context(model, cfg.context)
        log.info("fine-tuning %s with %d slice(s) of context each side (its own: %d)", cfg.init_from,
                 cfg.context, meta.get("config", {}).get("context", 0))
    return model


def with_context(model, context: int):
    """The same model taking ``context`` slices each side: the first convolution of each branch
    gets zero weights for the slices it did not see, so it starts out giving the same outputs."""
    from PETriageLib.models import build_model

    old = model.context
    if context < old:
        raise CheckpointError(f"cannot fine-tune a model with {old} slice(s) of context to {context}")
    new = build_model(model.name, model.windows, **{**model.config, "context": context})
    state, target = model.state_dict(), new.state_dict()
    for key, weight in state.items():
        if target[key].shape != weight.shape:  # a branch's first convolution: (out, 2c + 1, kh, kw)
            grown = torch.zeros_like(target[key])
            grown[:, context - old: context + old + 1] = weight
            state[key] = grown
    new.load_state_dict(state)
    return new.train(model.training)


def training_memory_format(cfg: TrainConfig, device: torch.device) -> torch.memory_format:
    """channels_last for bf16 on CUDA only.

    On the CPU it gained 5% (0.57 vs 0.60 s per step, DWL CBAMDRN-D-22 width 0.25, 128 px, batch 32)
    and torch 2.14.1's CPU backward of a 1 x 1 stride-2 convolution with 8 input channels in
    channels_last corrupts the heap (segfault or abort) at some map sizes, e.g. a width-0.25 DRN
    at 160 px in bf16 (docs/training.md, "Known problems").
    """
    if cfg.amp == "bf16" and device.type == "cuda":
        return torch.channels_last
    return torch.contiguous_format


def fine_tune_config(checkpoint: "str | Path", context: Optional[int] = None, **overrides) -> TrainConfig:
    """A TrainConfig whose model and preprocessing come from an existing checkpoint.

    ``context``: slices each side, when more than the checkpoint's (see ``with_context``).
    """
    from PETriageLib.models.checkpoint import load_checkpoint

    _, meta = load_checkpoint(checkpoint)
    stage = 1 if list(meta.get("class_names", [])) == list(STAGE_CLASSES[1]) else 2
    model_config = dict(meta.get("config", {}))
    if context is not None:
        model_config["context"] = int(context)
    base = dict(stage=stage, architecture=meta["architecture"], model_config=model_config,
                windows=[w["name"] if isinstance(w, dict) else w for w in meta["windows"]],
                input_size=int(meta["input_size"]), crop=meta.get("crop", "dynamic"),
                init_from=str(checkpoint), lr=1e-4, scheduler="cosine", epochs=3)
    base.update(overrides)
    return TrainConfig(**base)


def checkpoint_meta(model, cfg: TrainConfig, threshold: float, summary: dict) -> dict:
    return {
        "architecture": getattr(model, "name", cfg.architecture),
        "config": dict(getattr(model, "config", cfg.model_config)),
        "windows": [get_window(w).to_dict() for w in cfg.windows],
        "input_size": int(cfg.input_size),
        "crop": cfg.crop,
        "class_names": list(STAGE_CLASSES[cfg.stage]),
        "threshold": float(threshold),
        "training": summary,
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _save_state(path: Path, state: dict) -> None:
    write_checkpoint(path, state)  # atomic: a kill never leaves a half-written last.pt


def train(cfg: TrainConfig, train_set: SliceDataset, val_set: SliceDataset, out_dir: "str | Path",
          resume: bool = True, device: str = "cpu", data_summary: Optional[dict] = None) -> TrainResult:
    """Train one stage into out_dir (last.pt for resuming, best.pt = the shipped-format checkpoint)."""
    from PETriageLib.models.checkpoint import save_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"stage {cfg.stage}: {len(train_set)} training and {len(val_set)} validation slices; need both")
    dev = torch.device(device)
    model = build_for_training(cfg).to(dev)
    fmt = training_memory_format(cfg, dev)
    model = model.to(memory_format=fmt)
    head = None
    if cfg.mask_loss_weight > 0:
        from PETriageLib.training.lesion_loss import head_for

        if train_set.with_masks() == 0:
            raise ValueError("the lesion-map loss (mask_loss_weight > 0) needs lesion masks, and no training "
                             "slice has one: add a mask column to the manifest (docs/training.md)")
        head = head_for(model).to(dev).to(memory_format=fmt)
        log.info("lesion-map loss (weight %g) on %d of %d training slices", cfg.mask_loss_weight,
                 train_set.with_masks(), len(train_set))
    params = list(model.parameters()) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.steps_per_epoch or math.ceil(len(train_set) / cfg.batch_size)
    total = steps * cfg.epochs
    if cfg.scheduler == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    elif cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    elif cfg.scheduler == "constant":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    else:
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}: onecycle, cosine or constant")
    counts = train_set.class_counts()
    pos_weight = torch.tensor([counts[0] / max(counts[1], 1)]) if cfg.balance == "weighted_loss" else None
    aug = AugmentConfig.from_dict(cfg.augment_config) if cfg.augment_config else AugmentConfig()

    epoch, step, history, best, bad, resumed = 0, 0, [], None, 0, None
    last = out / LAST
    if resume and last.is_file():
        state = torch.load(last, map_location=dev, weights_only=True)
        check_digest(state, last, registered=False, what="training state")  # a damaged last.pt is not resumed
        old = TrainConfig.from_dict(state["config"])
        diff = cfg.differences(old)
        if diff:
            raise CheckpointError(f"{last}: cannot resume, settings changed: {', '.join(diff)} "
                                  f"(use a new output folder or --no-resume)")
        model.load_state_dict(state["model"])
        if head is not None:
            head.load_state_dict(state["lesion_head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch, step, history, best, bad = state["epoch"], state["step"], state["history"], state["best"], state["bad"]
        torch.set_rng_state(state["rng"])
        resumed = {"epoch": epoch, "step": step}
        log.info("resuming %s at epoch %d step %d", last, epoch, step)

    def snapshot(epoch_: int, step_: int) -> None:
        extra = {"lesion_head": head.state_dict()} if head is not None else {}
        _save_state(last, {**extra, "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "epoch": epoch_, "step": step_, "history": history, "best": best, "bad": bad,
                           "rng": torch.get_rng_state(), "config": cfg.to_dict()})

    summary_base = {"stage": cfg.stage, "train_slices": counts, "val_slices": val_set.class_counts(),
                    "train_patients": len(set(train_set.patients)), "val_patients": len(set(val_set.patients)),
                    "settings": cfg.to_dict(), "data": data_summary or {}}
    while epoch < cfg.epochs and bad < cfg.patience:
        order = epoch_order(train_set, cfg, epoch)
        model.train()
        bar = _progress(cfg, steps, step, f"stage {cfg.stage} epoch {epoch + 1}/{cfg.epochs}")
        run_loss, run_map, seen = 0.0, 0.0, 0
        while step < steps:
            gstep = epoch * steps + step
            torch.manual_seed(_step_seed(cfg.seed, gstep))
            rows = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x, y = train_set.batch(rows)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y).float().unsqueeze(1)
            lesions = has_mask = None
            if head is not None:
                maps_np, has_np = train_set.batch_lesion_maps(rows)
                lesions, has_mask = torch.from_numpy(maps_np), torch.from_numpy(has_np)
            if cfg.augment:
                g = torch.Generator().manual_seed(_step_seed(cfg.seed + 1, gstep))
                xt, lesions = augment_with_maps(xt, lesions, cfg.channel_windows(), aug, g)
            xt, yt = xt.to(dev).contiguous(memory_format=fmt), yt.to(dev)
            with _autocast(cfg, dev):
                if head is None:
                    logits = model(xt)
                else:
                    fmaps = model.branch_maps(xt)
                    logits, lesion_logits = model.classify(fmaps), head(fmaps)
            cls_loss = F.binary_cross_entropy_with_logits(logits.float(), yt, pos_weight=pos_weight)
            loss = cls_loss
            if head is not None:
                from PETriageLib.training.lesion_loss import lesion_map_loss

                map_loss = lesion_map_loss(lesion_logits, lesions.to(dev), has_mask.to(dev))
                loss = cls_loss + cfg.mask_loss_weight * map_loss
                run_map += map_loss.item() * len(y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run_loss += cls_loss.item() * len(y)
            seen += len(y)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{run_loss / seen:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if step % cfg.save_every == 0 and step < steps:
                snapshot(epoch, step)
        if bar is not None:
            bar.close()
        metrics = _validate(model, val_set, cfg, dev)
        metrics.update(epoch=epoch + 1, train_loss=run_loss / max(seen, 1), steps=steps)
        if head is not None:
            metrics["train_lesion_map_loss"] = run_map / max(seen, 1)
        history.append(metrics)
        improved = _better(metrics, best)
        if improved:
            best, bad = metrics, 0
            summary = dict(summary_base, best_epoch=epoch + 1, val=metrics, history=history)
            save_checkpoint(out / BEST, model, checkpoint_meta(model, cfg, metrics["threshold"], summary))
        else:
            bad += 1
        log.info("stage %d epoch %d: train loss %.4f, val loss %.4f, val AUROC %s, acc@thr %.4f%s", cfg.stage,
                 epoch + 1, metrics["train_loss"], metrics["val_loss"], metrics["val_auroc"],
                 metrics["val_acc_at_threshold"], " (best)" if improved else "")
        epoch, step = epoch + 1, 0
        snapshot(epoch, step)
    assert best is not None
    return TrainResult(out / BEST, best["threshold"], best["epoch"], history, resumed)


def _progress(cfg: TrainConfig, total: int, initial: int, desc: str):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True)
