"""Fit a checkpoint's domain check (the statistics of ``models.domain_stats``, applied at triage by
``triage.domain``) on its training data and store it; score cached series against it
(``petriage evaluate``).

``petriage train`` does this for every CBAMDRN-family checkpoint it writes; ``petriage fit-domain``
does it for an existing checkpoint (the shipped demo models were given theirs that way).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from PETriageLib.models.domain_stats import DEFAULT_QUANTILE, DomainModel, has_pooled_features, pooled_features
from PETriageLib.triage.domain import spread
from PETriageLib.models.checkpoint import file_sha256, load_checkpoint, read_checkpoint, write_checkpoint
from PETriageLib.training.series_models.feature_series import series_progress

log = logging.getLogger(__name__)

MAX_TRAIN_SLICES = 6000  # enough for a 512-feature covariance; more only costs time
DEFAULT_MARGIN = 1.5


def fit_domain_model(train_features: np.ndarray, val_series: Sequence[np.ndarray],
                     quantile: float = DEFAULT_QUANTILE, margin: float = DEFAULT_MARGIN) -> DomainModel:
    """Statistics of (N, D) training slice features; threshold = margin x the highest validation
    series score (each of ``val_series`` is one series' (n, D) features)."""
    from sklearn.covariance import LedoitWolf

    train_features = np.asarray(train_features, np.float64)
    if train_features.ndim != 2 or len(train_features) < 2:
        raise ValueError(f"need at least 2 training slices of features, got shape {train_features.shape}")
    val_series = [np.asarray(v, np.float64) for v in val_series if len(v)]
    if not val_series:
        raise ValueError("need at least one validation series with slices to set the threshold")
    if not 0 < quantile <= 100 or margin < 1:
        raise ValueError(f"quantile must lie in (0, 100] and margin be >= 1, got {quantile}, {margin}")
    lw = LedoitWolf().fit(train_features)
    model = DomainModel(lw.location_, lw.precision_, 0.0, float(quantile))
    scores = np.array([model.series_score(v) for v in val_series])
    model.threshold = float(margin * scores.max())
    model.info = {"margin": float(margin), "train_slices": int(len(train_features)),
                  "val_series": int(len(scores)), "shrinkage": round(float(lw.shrinkage_), 6),
                  "val_scores": {"min": round(float(scores.min()), 2), "median": round(float(np.median(scores)), 2),
                                 "max": round(float(scores.max()), 2)}}
    log.info("domain statistics of %d training slices (%d features); validation series score %.1f-%.1f, "
             "threshold %.1f", len(train_features), train_features.shape[1], scores.min(), scores.max(),
             model.threshold)
    return model


def _lung_slices(sources: Sequence) -> list[tuple[Any, np.ndarray]]:
    return [(s, np.flatnonzero(s.has_lung)) for s in sources if np.any(s.has_lung)]


def _triage_features(model: torch.nn.Module, source: Any, lung: np.ndarray, batch_size: int = 32,
                     device: Any = "cpu") -> np.ndarray:
    """Pooled features of the slices triage scores in a series: up to MAX_SLICES of its lung slices, spread."""
    return pooled_features(model, np.asarray(source.images[spread(lung.tolist())], np.float32), batch_size, device)


def fit_from_sources(model: torch.nn.Module, train_sources: Sequence, val_sources: Sequence, *,
                     max_train_slices: int = MAX_TRAIN_SLICES, seed: int = 0, quantile: float = DEFAULT_QUANTILE,
                     margin: float = DEFAULT_MARGIN, batch_size: int = 32, device: Any = "cpu",
                     progress: bool = False) -> DomainModel:
    """Domain statistics from cached sources (training.cache.CachedSource): a seeded sample of at
    most ``max_train_slices`` training slices with lung, and every validation series for the
    threshold (each scored on the slices triage would score)."""
    if max_train_slices < 2:
        raise ValueError(f"max_train_slices must be at least 2, got {max_train_slices}")
    train = _lung_slices(train_sources)
    total = sum(len(k) for _, k in train)
    if total == 0:
        raise ValueError("no training slice with lung to fit the domain statistics on")
    # exactly min(total, max_train_slices) slices, a seeded draw over all of them
    chosen = np.zeros(total, bool)
    chosen[np.random.default_rng(seed).choice(total, min(total, max_train_slices), replace=False)] = True
    starts = np.cumsum([0] + [len(k) for _, k in train])
    feats = []
    for n, (s, k) in enumerate(series_progress(train, "domain statistics (train)", progress)):
        picked = k[chosen[starts[n]:starts[n + 1]]]
        if len(picked):
            feats.append(pooled_features(model, np.asarray(s.images[picked], np.float32), batch_size, device))
    # validation series scored as triage scores a series
    val = [_triage_features(model, s, k, batch_size, device)
           for s, k in series_progress(_lung_slices(val_sources), "domain threshold (val)", progress)]
    domain = fit_domain_model(np.concatenate(feats), val, quantile, margin)
    domain.info["train_series"] = len(train)
    return domain


def attach_domain_model(checkpoint: "str | os.PathLike", domain: DomainModel,
                        out: "str | os.PathLike | None" = None) -> Path:
    """Write the checkpoint again (to ``out``, default in place, atomically) with the statistics."""
    data = read_checkpoint(checkpoint)
    tensors, meta = domain.to_payload()
    # the weights do not change: series models trained on any earlier file of them still fit
    meta["same_weights_as"] = list(data["meta"].get("domain", {}).get("same_weights_as", [])) + [
        file_sha256(checkpoint)]
    data["domain"] = tensors
    data["meta"]["domain"] = meta
    dest = write_checkpoint(out or checkpoint, data)
    log.info("domain check stored in %s: threshold %.1f", dest, domain.threshold)
    return dest


def fit_checkpoint_domain(checkpoint: "str | os.PathLike", manifest: "str | Path | Sequence",
                          splits_file: "str | Path", cache_root: "str | Path", *,
                          out: "str | os.PathLike | None" = None,
                          max_train_series: "int | None" = None, seed: int = 0, **options: Any) -> DomainModel:
    """The ``fit-domain`` command: the checkpoint's own preprocessing, the splits' train and val
    patients (at most ``max_train_series`` training patients, seeded), the slice cache for speed."""
    from PETriageLib.models.zoo import resources_dir
    from PETriageLib.preprocess.slices import PreprocessConfig
    from PETriageLib.training.cache import cache_sources
    from PETriageLib.training.data import make_splits
    from PETriageLib.training.manifest import load_manifest

    if out is None and Path(checkpoint).resolve().is_relative_to(Path(resources_dir()).resolve()):
        raise ValueError(f"{checkpoint} is a registered model: rewriting it would change the SHA256 that "
                         "Resources/models.json checks; write the result elsewhere with --out")
    model, meta = load_checkpoint(checkpoint)
    if not has_pooled_features(model):
        raise ValueError(f"{checkpoint}: {meta['architecture']} has no pooled branch features; "
                         "the domain check needs a window-fusion model (CBAMDRN family)")
    sources = load_manifest(manifest)
    if not Path(splits_file).is_file():
        raise FileNotFoundError(f"splits file {splits_file} not found: use the one the checkpoint was trained with")
    splits = make_splits(sources, splits_file)
    train_ids = sorted(splits.get("train", []))
    if max_train_series is not None and len(train_ids) > max_train_series:
        train_ids = sorted(np.random.default_rng(seed).choice(train_ids, max_train_series, replace=False).tolist())
    config = PreprocessConfig.from_dict(meta)
    picked = {name: [s for s in sources if s.patient_id in set(ids)]
              for name, ids in (("train", train_ids), ("val", splits.get("val", [])))}
    for name, chosen in picked.items():
        if not chosen:
            raise ValueError(f"the splits file has no {name} patients in this manifest")
        log.info("%s: %d sources", name, len(chosen))
    cached = {name: cache_sources(chosen, config, cache_root) for name, chosen in picked.items()}
    domain = fit_from_sources(model, cached["train"], cached["val"], seed=seed, **options)
    attach_domain_model(checkpoint, domain, out)
    return domain


def score_sources(model: torch.nn.Module, domain: DomainModel, sources: Sequence) -> list[float | None]:
    """Each cached source's series score as triage computes it (up to MAX_SLICES slices with lung
    spread over the series); None for a source without lung."""
    return [domain.series_score(_triage_features(model, s, np.flatnonzero(s.has_lung))) if np.any(s.has_lung)
            else None for s in sources]
