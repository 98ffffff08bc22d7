"""Train one cascade stage: balanced sampling or weighted loss, augmentation, AdamW + schedule,
early stopping on the validation split, resumable checkpoints, operating threshold on val.

Determinism: each step seeds its own RNG from (seed, global step), and each epoch's sample
order from (seed, epoch), so a run resumed from ``last.pt`` continues exactly where the
interrupted one stopped.

Under torchrun (``distributed.py``) every rank runs this loop on its part of each step's batch
(``sampler.py``) inside DistributedDataParallel; rank 0 alone validates and writes files, and
sends the validation outcome to the others so that they stop together.
"""
from __future__ import annotations

import contextlib
import logging
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
from PETriageLib.training.distributed import DistContext, broadcast, wrap_model
from PETriageLib.training.sampler import BatchPlan
from PETriageLib.training.stream import StreamLoader, StreamedSliceDataset
from PETriageLib.training.sampler import epoch_order as _order
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


def _augment_seed(seed: int, step: int, group: int) -> int:
    """Group 0 keeps the single-process seed; each further group (micro-batch or rank) its own."""
    return _step_seed(seed + 1 + 1_000 * group, step)


def epoch_order(dataset: SliceDataset, cfg: TrainConfig, epoch: int, world_size: int = 1) -> np.ndarray:
    """Sample indices for one epoch (all ranks): class-balanced draws or a shuffled pass."""
    plan = BatchPlan(cfg.batch_size, world_size, 0, cfg.micro_batches)
    steps = plan.steps_per_epoch(len(dataset), cfg.steps_per_epoch)
    return _order(dataset.targets, cfg.balance, cfg.seed, epoch, steps, plan.effective)


class _TrainingNet(torch.nn.Module):
    """The model and its optional lesion-map head as one module, so DDP averages both."""

    def __init__(self, model: torch.nn.Module, head: Optional[torch.nn.Module]) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor):
        if self.head is None:
            return self.model(x), None
        fmaps = self.model.branch_maps(x)
        return self.model.classify(fmaps), self.head(fmaps)


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
          resume: bool = True, device: str = "cpu", data_summary: Optional[dict] = None,
          ctx: DistContext = DistContext(), workers: int = 2, prefetch: int = 2) -> TrainResult:
    """Train one stage into out_dir (last.pt for resuming, best.pt = the shipped-format checkpoint).

    ``workers``, ``prefetch``: DataLoader workers and micro-batches each reads ahead, when
    ``train_set`` streams (``stream.StreamedSliceDataset``); a cached one is read in this process.

    ``ctx``: this process's rank in a torchrun launch (``distributed.init_distributed``); every
    rank must call this with the same data and settings.
    """
    from PETriageLib.models.checkpoint import save_checkpoint

    out = Path(out_dir)
    if ctx.is_main:
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
    plan = BatchPlan(cfg.batch_size, ctx.world_size, ctx.rank, cfg.micro_batches)
    steps = plan.steps_per_epoch(len(train_set), cfg.steps_per_epoch)
    log.info("stage %d: effective batch %d (%d per rank x %d rank(s), %d micro-batch(es) each), peak lr %g "
             "(as given: not scaled with the ranks), %d steps per epoch", cfg.stage, plan.effective,
             cfg.batch_size, ctx.world_size, cfg.micro_batches, cfg.lr, steps)
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
        if state.get("world_size", 1) != ctx.world_size:  # another effective batch and sample order
            diff.append(f"ranks ({state.get('world_size', 1)} then, {ctx.world_size} now)")
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
        if not ctx.is_main:
            return
        extra = {"lesion_head": head.state_dict()} if head is not None else {}
        _save_state(last, {**extra, "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "epoch": epoch_, "step": step_, "history": history, "best": best, "bad": bad,
                           "rng": torch.get_rng_state(), "config": cfg.to_dict(), "world_size": ctx.world_size})

    net = wrap_model(ctx, _TrainingNet(model, head), dev)
    stream = None
    if isinstance(train_set, StreamedSliceDataset):
        if head is not None:
            raise ValueError("the lesion-map loss needs the slice cache (its masks are not streamed): drop --no-cache")
        stream = StreamLoader(train_set, workers, prefetch)
        log.info("streaming the training slices: %d DataLoader worker(s), %d micro-batch(es) ahead each, "
                 "at most %d decoded series per worker", workers, prefetch, train_set.series.size)

    summary_base = {"stage": cfg.stage, "train_slices": counts, "val_slices": val_set.class_counts(),
                    "train_patients": len(set(train_set.patients)), "val_patients": len(set(val_set.patients)),
                    "settings": cfg.to_dict(), "data": data_summary or {},
                    "ranks": ctx.world_size, "effective_batch": plan.effective}
    while epoch < cfg.epochs and bad < cfg.patience:
        order = epoch_order(train_set, cfg, epoch, ctx.world_size)
        model.train()
        bar = _progress(cfg, steps, step, f"stage {cfg.stage} epoch {epoch + 1}/{cfg.epochs}") if ctx.is_main else None
        sums = np.zeros(3)  # classification loss x slices, lesion-map loss x slices, slices (this rank)
        # this rank's micro-batches of the rest of the epoch, read in order (by workers when streaming)
        todo = [rows for st in range(step, steps) for _, rows in plan.groups(plan.rank_rows(order, st))]
        batches = stream.batches(todo) if stream is not None else (train_set.batch(rows) for rows in todo)
        while step < steps:
            gstep = epoch * steps + step
            torch.manual_seed(_step_seed(cfg.seed, gstep))
            opt.zero_grad(set_to_none=True)
            groups = plan.groups(plan.rank_rows(order, step))
            for k, (group, rows) in enumerate(groups):
                # Gradients of all groups but the last build up locally; the last one's backward averages them over the ranks.
                sync = k == len(groups) - 1 or not ctx.active
                with (contextlib.nullcontext() if sync else net.no_sync()):
                    sums += _group_step(net, train_set, next(batches), rows, cfg, aug, gstep, group, pos_weight,
                                        dev, fmt, len(groups))
            opt.step()
            sched.step()
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sums[0] / max(sums[2], 1):.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if step % cfg.save_every == 0 and step < steps:
                snapshot(epoch, step)
        if bar is not None:
            bar.close()
        run_loss, run_map, seen = (float(v) for v in all_sum(ctx, sums, dev))  # plain floats: weights-only files
        metrics = broadcast(ctx, _validate(model, val_set, cfg, dev) if ctx.is_main else None)
        model.train()
        metrics.update(epoch=epoch + 1, train_loss=run_loss / max(seen, 1), steps=steps)
        if head is not None:
            metrics["train_lesion_map_loss"] = run_map / max(seen, 1)
        history.append(metrics)
        improved = _better(metrics, best)
        if improved:
            best, bad = metrics, 0
            if ctx.is_main:
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


def _group_step(net, train_set: SliceDataset, batch, rows, cfg: TrainConfig, aug: AugmentConfig, gstep: int,
                group: int, pos_weight, dev, fmt, n_groups: int) -> np.ndarray:
    """Forward and backward of one micro-batch (``batch``: its inputs and targets, of dataset
    ``rows``), its loss scaled by 1 / n_groups so that the summed gradients are the mean over the
    step's groups; returns its loss sums for the epoch log."""
    x, y = batch
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).float().unsqueeze(1)
    with_maps = cfg.mask_loss_weight > 0
    lesions = has_mask = None
    if with_maps:
        maps_np, has_np = train_set.batch_lesion_maps(rows)
        lesions, has_mask = torch.from_numpy(maps_np), torch.from_numpy(has_np)
    if cfg.augment:
        g = torch.Generator().manual_seed(_augment_seed(cfg.seed, gstep, group))
        xt, lesions = augment_with_maps(xt, lesions, cfg.channel_windows(), aug, g)
    xt, yt = xt.to(dev).contiguous(memory_format=fmt), yt.to(dev)
    with _autocast(cfg, dev):
        logits, lesion_logits = net(xt)
    cls_loss = F.binary_cross_entropy_with_logits(logits.float(), yt, pos_weight=pos_weight)
    loss, map_sum = cls_loss, 0.0
    if with_maps:
        from PETriageLib.training.lesion_loss import lesion_map_loss

        map_loss = lesion_map_loss(lesion_logits, lesions.to(dev), has_mask.to(dev))
        loss = cls_loss + cfg.mask_loss_weight * map_loss
        map_sum = map_loss.item() * len(y)
    (loss / n_groups).backward()
    return np.array([cls_loss.item() * len(y), map_sum, len(y)])


def all_sum(ctx: DistContext, values: np.ndarray, device: torch.device) -> np.ndarray:
    """``values`` summed over the ranks (the epoch's training loss counts every rank's slices)."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(t)
    return t.cpu().numpy()


def _progress(cfg: TrainConfig, total: int, initial: int, desc: str):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True)
