"""Train one stage straight from a manifest: split by patient, cache, train, keep the splits."""
from __future__ import annotations

import logging
from pathlib import Path

from PETriageLib.training.cache import SliceDataset
from PETriageLib.training.config import TrainConfig
from PETriageLib.training.data import build_cache_share, cached_splits, data_summary, make_splits
from PETriageLib.training.distributed import DistContext, barrier
from PETriageLib.training.manifest import load_manifest
from PETriageLib.training.stream import (DEFAULT_SERIES_PER_WORKER, StreamedSliceDataset, index_share,
                                         streamed_splits)
from PETriageLib.training.train import TrainResult, train

log = logging.getLogger(__name__)


def train_from_manifest(cfg: TrainConfig, manifest: "str | Path", out_dir: "str | Path",
                        cache_root: "str | Path | None" = None, splits_file: "str | Path | None" = None,
                        resume: bool = True, device: str = "cpu",
                        ratios: "tuple[float, float, float]" = (5, 3, 2),
                        ctx: DistContext = DistContext(), data: str = "cache", workers: int = 2,
                        prefetch: int = 2, series_per_worker: int = DEFAULT_SERIES_PER_WORKER) -> TrainResult:
    """Splits go to ``splits_file`` (default out_dir/splits.json) so evaluation uses the same patients.

    Patients of the manifest missing from an existing splits file (data added since) are split by
    ``ratios`` and added to it; the others keep their split.

    Under torchrun (``ctx``) rank 0 writes the splits, the ranks build the slice cache in turns of
    sources (never two on one entry), and rank 0 alone fits the domain check.

    ``data="stream"``: no slice cache; the slices are decoded and preprocessed in ``workers``
    DataLoader workers (``stream.py``), each keeping ``series_per_worker`` decoded series. Only a
    small per-source index (labels, slices with lung) is written, under ``cache_root``/stream-index.
    """
    if data not in ("cache", "stream"):
        raise ValueError(f"data must be 'cache' or 'stream', got {data!r}")
    if data == "stream":
        return _train_streaming(cfg, manifest, out_dir, cache_root, splits_file, resume, device, ratios, ctx,
                                workers, prefetch, series_per_worker)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits_file = Path(splits_file) if splits_file else out / "splits.json"
    cache_root = Path(cache_root) if cache_root else out / "cache"
    masks_for = ("train",) if cfg.mask_loss_weight > 0 else ()
    if ctx.active:
        if ctx.is_main:
            make_splits(load_manifest(manifest), splits_file, ratios, cfg.seed, extend=True)
        barrier(ctx)
        build_cache_share(manifest, cfg.preprocess_dict(), cache_root, splits_file, cfg.seed, ("train", "val"),
                          masks_for, ctx.rank, ctx.world_size)
        barrier(ctx)
    cached = cached_splits(manifest, cfg.preprocess_dict(), cache_root, splits_file, cfg.seed,
                           wanted=("train", "val"), ratios=ratios, masks_for=masks_for, extend=True)
    train_set, val_set = SliceDataset(cached["train"], cfg.stage), SliceDataset(cached["val"], cfg.stage)
    log.info("stage %d: %d training slices %s, %d validation slices %s", cfg.stage, len(train_set),
             train_set.class_counts(), len(val_set), val_set.class_counts())
    result = train(cfg, train_set, val_set, out, resume=resume, device=device,
                   data_summary=data_summary(cached, manifest), ctx=ctx)
    if ctx.is_main:
        _fit_domain(result.best_path, cached, cfg.seed, device)
    barrier(ctx)  # best.pt is complete before any rank returns
    return result


def _train_streaming(cfg: TrainConfig, manifest, out_dir, cache_root, splits_file, resume: bool, device: str,
                     ratios, ctx: DistContext, workers: int, prefetch: int, series_per_worker: int) -> TrainResult:
    from PETriageLib.preprocess.slices import PreprocessConfig

    if cfg.mask_loss_weight > 0:
        raise ValueError("the lesion-map loss needs the slice cache (lesion masks are not streamed): drop --no-cache")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits_file = Path(splits_file) if splits_file else out / "splits.json"
    index_root = (Path(cache_root) if cache_root else out) / "stream-index"
    if ctx.active:  # rank 0 splits, then each rank indexes every N-th source
        if ctx.is_main:
            make_splits(load_manifest(manifest), splits_file, ratios, cfg.seed, extend=True)
        barrier(ctx)
        index_share(manifest, cfg.preprocess_dict(), index_root, splits_file, cfg.seed, ("train", "val"),
                    ctx.rank, ctx.world_size, workers)
        barrier(ctx)
    streamed = streamed_splits(manifest, cfg.preprocess_dict(), index_root, splits_file, cfg.seed,
                               ("train", "val"), ratios, extend=True, workers=workers)
    config = PreprocessConfig.from_dict(cfg.preprocess_dict())
    train_set = StreamedSliceDataset(streamed["train"], cfg.stage, config, series_per_worker)
    val_set = StreamedSliceDataset(streamed["val"], cfg.stage, config, series_per_worker)
    log.info("stage %d (streamed): %d training slices %s, %d validation slices %s", cfg.stage, len(train_set),
             train_set.class_counts(), len(val_set), val_set.class_counts())
    result = train(cfg, train_set, val_set, out, resume=resume, device=device,
                   data_summary=data_summary(streamed, manifest), ctx=ctx, workers=workers, prefetch=prefetch)
    if ctx.is_main:  # the domain statistics read cached images
        log.info("%s: no domain check stored (streamed data); add one with `petriage fit-domain`", result.best_path)
    barrier(ctx)
    return result


def _fit_domain(best: Path, cached: dict, seed: int, device: str) -> None:
    """Give the best checkpoint its domain check; a model or data it cannot be fitted on only logs why.
    A best.pt that has one already (a re-run that trained nothing new) is left as it is, so that its
    SHA256, which series models are bound to, does not change."""
    from PETriageLib.models.domain_stats import has_pooled_features
    from PETriageLib.models.checkpoint import model_from_checkpoint, read_checkpoint
    from PETriageLib.training.domain_fit import attach_domain_model, fit_from_sources

    data = read_checkpoint(best, map_location=device)
    if "domain" in data:
        log.info("%s already has its domain check", best)
        return
    model, meta = model_from_checkpoint(data, best, device), data["meta"]
    if not has_pooled_features(model):
        log.info("%s: %s has no pooled branch features; no domain check stored", best, meta["architecture"])
        return
    try:
        domain = fit_from_sources(model, cached["train"], cached["val"], seed=seed, device=device)
    except ValueError as exc:
        log.warning("%s: no domain check stored: %s", best, exc)
        return
    attach_domain_model(best, domain)
