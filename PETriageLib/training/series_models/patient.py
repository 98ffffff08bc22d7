"""Train a patient classifier on slice-feature series; pick the epoch and the threshold on validation."""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from PETriageLib.training.series_models.train_config import PatientTrainConfig
from PETriageLib.training.series_models.fit import fit_series_model
from PETriageLib.models.series_nets import (ENSEMBLE_HEADS, CascadeScore, PatientClassifier, PatientEnsemble,
                                            predict_patients)
from PETriageLib.training.series_models.feature_series import PatientSeries

log = logging.getLogger(__name__)


def predict_series(model: "PatientClassifier | PatientEnsemble", series: Sequence[PatientSeries],
                   batch_size: int = 32) -> np.ndarray:
    """PE probability per series."""
    return predict_patients(model, [s.features for s in series], batch_size)


def _check_labels(items: Sequence[PatientSeries], name: str) -> None:
    if {s.is_pe for s in items} != {0, 1}:
        raise ValueError(f"the {name} split needs PE and non-PE patients; it has "
                         f"{sum(s.is_pe for s in items)} PE of {len(items)}")


def _check(train: Sequence[PatientSeries], val: Sequence[PatientSeries]) -> None:
    _check_labels(train, "training")
    _check_labels(val, "validation")
    shared = {s.patient_id for s in train} & {s.patient_id for s in val}
    if shared:
        raise ValueError(f"{len(shared)} patients are in both training and validation, e.g. {sorted(shared)[0]}")


def _fit(train: Sequence[PatientSeries], val: Sequence[PatientSeries], cfg: PatientTrainConfig, head: str,
         progress: bool) -> "tuple[PatientClassifier, dict, list[dict]]":
    """One head trained; the weights of its epoch with the best validation AUROC."""
    from PETriageLib.training.metrics import auroc_ci

    torch.manual_seed(cfg.seed)
    feats = [torch.from_numpy(np.asarray(s.features, np.float32)) for s in train]
    y = torch.tensor([s.is_pe for s in train], dtype=torch.float32)
    y_val = np.array([s.is_pe for s in val])
    model = PatientClassifier(feats[0].shape[1], head, cfg.hidden, cfg.dropout)
    model.set_standardisation(torch.cat(feats))
    # Weigh the classes equally whatever their counts.
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=(len(y) - y.sum()) / y.sum())

    def validate(m: PatientClassifier) -> "tuple[float, dict]":
        auroc = float(auroc_ci(y_val, predict_series(m, val), n_boot=0)["auroc"])
        return auroc, {"val_auroc": auroc}

    best, history = fit_series_model(model, feats, cfg, lambda logits, _mask, idx: loss_fn(logits, y[idx]),
                                     validate, f"patient {head}", progress, tag={"head": head})
    return model, best, history


def train_patient_classifier(train: Sequence[PatientSeries], val: Sequence[PatientSeries],
                             cfg: PatientTrainConfig, progress: bool = False
                             ) -> "tuple[PatientClassifier | PatientEnsemble | CascadeScore, dict, list[dict]]":
    """(best model, its validation summary with the threshold, per-epoch history).

    ``ensemble`` trains every head on its own (each its best epoch) and averages their probabilities.
    ``score`` has nothing to train (``train`` may be empty): only its threshold is set.
    """
    if cfg.head == "score":
        _check_labels(val, "validation")
        model = CascadeScore(val[0].features.shape[1])
        return model, _with_threshold(model, {"head": "score"}, val, cfg), []
    _check(train, val)
    heads = ENSEMBLE_HEADS if cfg.head == "ensemble" else (cfg.head,)
    fitted = [_fit(train, val, cfg, head, progress) for head in heads]
    history = [row for _, _, h in fitted for row in h]
    if cfg.head == "ensemble":
        model = PatientEnsemble([m for m, _, _ in fitted])
        best = {"head": "ensemble", "members": {b["head"]: {"epoch": b["epoch"], "val_auroc": b["val_auroc"]}
                                                for _, b, _ in fitted}}
    else:
        model, best = fitted[0][0], fitted[0][1]
    return model, _with_threshold(model, best, val, cfg), history


def _with_threshold(model: torch.nn.Module, best: dict, val: Sequence[PatientSeries],
                    cfg: PatientTrainConfig) -> dict:
    """``best`` with the model's validation AUROC and the threshold for the target sensitivity."""
    from PETriageLib.training.metrics import auroc_ci, threshold_for_sensitivity

    y_val = np.array([s.is_pe for s in val])
    p_val = predict_series(model, val)
    threshold = threshold_for_sensitivity(y_val, p_val, cfg.target_sensitivity)
    found = p_val >= threshold
    best.update(val_auroc=float(auroc_ci(y_val, p_val, n_boot=0)["auroc"]), threshold=threshold,
                val_sensitivity=float(found[y_val == 1].mean()),
                val_specificity=float((~found[y_val == 0]).mean()), val_patients=len(val))
    log.info("patient %s: validation AUROC %.3f, threshold %.4f (sensitivity %.3f, specificity %.3f)",
             cfg.head, best["val_auroc"], threshold, best["val_sensitivity"], best["val_specificity"])
    return best


def save_patient_classifier(path: "str | Path", model: "PatientClassifier | PatientEnsemble | CascadeScore",
                            cfg: PatientTrainConfig, summary: dict, stages: Sequence[dict]) -> Path:
    """stages: per stage {"sha256", "path"} of the checkpoints whose features the classifier reads."""
    from PETriageLib.models.series_checkpoint import save_series_model

    return save_series_model(path, model, {
        "type": "patient_classifier", "head": model.head, "in_features": model.in_features,
        "hidden": model.hidden, "dropout": cfg.dropout, "features": cfg.features,
        "threshold": float(summary["threshold"]), "target_sensitivity": cfg.target_sensitivity,
        "validation": summary, "stages": list(stages), "train_config": asdict(cfg)})
