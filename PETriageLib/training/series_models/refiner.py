"""Train the slice refiner: per-slice targets of both stages, epoch and thresholds chosen on validation.

Stage 1's target (diseased) counts on every slice with lung, stage 2's (PE) on the diseased
slices only, as the stages themselves are trained. The thresholds are set as the stages set
theirs: for ``target_sensitivity`` of the validation split's diseased and PE slices.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from PETriageLib.training.series_models.train_config import RefinerTrainConfig
from PETriageLib.vocabulary import SLICE_LABELS
from PETriageLib.training.series_models.fit import fit_series_model
from PETriageLib.models.series_nets import SliceRefiner, pad_batch, refine_slices
from PETriageLib.training.series_models.feature_series import PatientSeries

log = logging.getLogger(__name__)


def slice_targets(series: PatientSeries) -> "tuple[np.ndarray, np.ndarray]":
    """(diseased, pe) per slice of the series, as 0/1."""
    labels = np.asarray(series.slice_labels)
    return (labels != "wnl").astype(np.float32), (labels == "pe").astype(np.float32)


def refine_series(model: SliceRefiner, series: Sequence[PatientSeries], batch_size: int = 32) -> list[np.ndarray]:
    """Per series: (slices, 2) refined [p(disease), p(PE)]."""
    return refine_slices(model, [s.features for s in series], batch_size)


def stage_scores(series: Sequence[PatientSeries], probs: Sequence[np.ndarray]
                 ) -> "tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]":
    """(y1, p1) over every slice and (y2, p2) over the diseased slices, pooled over the series."""
    y1, y2 = zip(*(slice_targets(s) for s in series))
    y1, y2, p = np.concatenate(y1), np.concatenate(y2), np.concatenate(list(probs))
    diseased = y1 == 1
    return y1, p[:, 0], y2[diseased], p[diseased, 1]


def _aurocs(series: Sequence[PatientSeries], probs: Sequence[np.ndarray]) -> "tuple[float, float]":
    from sklearn.metrics import roc_auc_score

    y1, p1, y2, p2 = stage_scores(series, probs)
    return float(roc_auc_score(y1, p1)), float(roc_auc_score(y2, p2))


def _check(train: Sequence[PatientSeries], val: Sequence[PatientSeries]) -> None:
    for name, items in (("training", train), ("validation", val)):
        labels = {lab for s in items for lab in s.slice_labels}
        if not set(SLICE_LABELS) <= labels:
            raise ValueError(f"the {name} split needs WNL, PE and other-disease slices; it has {sorted(labels)}")
    shared = {s.patient_id for s in train} & {s.patient_id for s in val}
    if shared:
        raise ValueError(f"{len(shared)} patients are in both training and validation, e.g. {sorted(shared)[0]}")


def train_slice_refiner(train: Sequence[PatientSeries], val: Sequence[PatientSeries], cfg: RefinerTrainConfig,
                        progress: bool = False) -> "tuple[SliceRefiner, dict, list[dict]]":
    """(model of the best validation epoch, summary with both thresholds, per-epoch history)."""
    from PETriageLib.training.metrics import threshold_for_sensitivity

    _check(train, val)
    torch.manual_seed(cfg.seed)
    feats = [torch.from_numpy(np.asarray(s.features, np.float32)) for s in train]
    targets = [tuple(torch.from_numpy(t) for t in slice_targets(s)) for s in train]
    model = SliceRefiner(feats[0].shape[1], cfg.hidden, cfg.dropout)
    model.set_standardisation(torch.cat(feats))
    bce = nn.BCEWithLogitsLoss(reduction="none")

    def batch_loss(logits: torch.Tensor, mask: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        diseased = pad_batch([targets[i][0][:, None] for i in idx])[0][..., 0]
        pe = pad_batch([targets[i][1][:, None] for i in idx])[0][..., 0]
        loss1 = (bce(logits[..., 0], diseased) * mask).sum() / mask.sum()
        on = mask & (diseased > 0)  # stage 2 learns on diseased slices only
        return loss1 + (bce(logits[..., 1], pe) * on).sum() / on.sum().clamp_min(1)

    def validate(m: SliceRefiner) -> "tuple[float, dict]":
        a1, a2 = _aurocs(val, refine_series(m, val))
        return a1 + a2, {"val_auroc_stage1": a1, "val_auroc_stage2": a2}

    best, history = fit_series_model(model, feats, cfg, batch_loss, validate, "slice refiner", progress)
    y1, p1, y2, p2 = stage_scores(val, refine_series(model, val))
    t1 = threshold_for_sensitivity(y1, p1, cfg.target_sensitivity[0])
    t2 = threshold_for_sensitivity(y2, p2, cfg.target_sensitivity[1])
    best.update(threshold_disease=t1, threshold_pe=t2, val_patients=len(val),
                val_acc_stage1=float(((p1 >= t1) == y1).mean()), val_acc_stage2=float(((p2 >= t2) == y2).mean()))
    log.info("slice refiner: epoch %d, validation AUROC %.3f / %.3f, thresholds %.4f / %.4f", best["epoch"],
             best["val_auroc_stage1"], best["val_auroc_stage2"], t1, t2)
    return model, best, history


def save_slice_refiner(path: "str | Path", model: SliceRefiner, cfg: RefinerTrainConfig, summary: dict,
                       stages: Sequence[dict]) -> Path:
    from PETriageLib.models.series_checkpoint import save_series_model

    return save_series_model(path, model, {
        "type": "slice_refiner", "in_features": model.in_features, "hidden": model.hidden, "dropout": cfg.dropout,
        "features": cfg.features, "threshold_disease": float(summary["threshold_disease"]),
        "threshold_pe": float(summary["threshold_pe"]), "validation": summary, "stages": list(stages),
        "train_config": asdict(cfg)})
