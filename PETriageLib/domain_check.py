"""Is a series like the data a model was trained on? A distance in the model's feature space.

The pooled features of a checkpoint's training slices (the vector its last layer classifies) are
summarised by their mean and a shrunk covariance (Ledoit-Wolf). A slice's squared Mahalanobis
distance to them grows as the image departs from that data. A series scores a low percentile
of its slices' distances (default the 10th), so that its diseased or unusual slices do not
raise it while a series from another kind of scanner or data set does: the shipped demo models,
trained on phantoms, call nearly every slice of a real CT diseased, and this is how the cascade
knows not to trust them there. The threshold is set on the validation series, the highest of
their scores times a margin, and stored in the checkpoint with the statistics.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_QUANTILE = 10.0
DEFAULT_MARGIN = 1.5
MAX_SLICES = 24  # slices scored per series at triage: a low percentile needs no more
MODES = ("refuse", "warn", "off")


@dataclass
class DomainModel:
    """Feature statistics of one checkpoint's training slices, and the series threshold."""

    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D), inverse of the shrunk covariance
    threshold: float
    quantile: float = DEFAULT_QUANTILE
    info: dict = field(default_factory=dict)  # what it was fitted on (JSON)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of (N, D) features."""
        d = np.asarray(features, np.float64) - self.mean
        return np.einsum("ij,jk,ik->i", d, self.precision, d)

    def series_score(self, features: np.ndarray) -> float:
        if len(features) == 0:
            raise ValueError("no slice features to score")
        return float(np.percentile(self.distances(features), self.quantile))

    def to_payload(self) -> "tuple[dict, dict]":
        """(tensors, JSON meta) for a checkpoint's ``domain`` entry and ``meta['domain']``."""
        import torch

        tensors = {"mean": torch.from_numpy(self.mean.astype(np.float32)),
                   "precision": torch.from_numpy(self.precision.astype(np.float32))}
        return tensors, {"threshold": self.threshold, "quantile": self.quantile, **self.info}

    @classmethod
    def from_payload(cls, tensors: Any, meta: Any) -> "DomainModel | None":
        """None when the checkpoint has no domain entry; ValueError when it has a damaged one (a
        check that silently switched itself off would be worse than a refused checkpoint)."""
        if tensors is None and meta is None:
            return None
        try:
            mean = tensors["mean"].double().numpy()
            precision = tensors["precision"].double().numpy()
            threshold = float(meta["threshold"])
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"its domain check entry is incomplete or damaged ({type(exc).__name__}: {exc})") from None
        if mean.ndim != 1 or precision.shape != (len(mean), len(mean)):
            raise ValueError(f"its domain statistics have inconsistent shapes {mean.shape} and {precision.shape}")
        info = {k: v for k, v in meta.items() if k not in ("threshold", "quantile")}
        return cls(mean, precision, threshold, float(meta.get("quantile", DEFAULT_QUANTILE)), info)


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


@dataclass
class DomainCheck:
    """One series' score against a checkpoint's domain threshold."""

    score: float
    threshold: float
    quantile: float
    slices: int
    model: str

    @property
    def in_domain(self) -> bool:
        return self.score <= self.threshold

    def reason(self) -> str:
        return (f"the series is unlike the data model {self.model} was trained on: feature distance "
                f"{self.score:.0f} ({self.quantile:g}th percentile of {self.slices} slices) exceeds "
                f"{self.threshold:.0f}, the limit set on its validation series, so its probabilities "
                "cannot be trusted here (kept per slice for inspection); fine-tune on data like this "
                "series, or triage with domain check 'warn' to see the verdict anyway")

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 2), "threshold": round(self.threshold, 2), "quantile": self.quantile,
                "slices": self.slices, "model": self.model, "in_domain": self.in_domain}


def spread(indices: Sequence[int], n: int = MAX_SLICES) -> list[int]:
    """At most n of the indices, evenly spaced over the series (all of them when fewer)."""
    indices = list(indices)
    if len(indices) <= n:
        return indices
    return [indices[int(round(i))] for i in np.linspace(0, len(indices) - 1, n)]


def pooled_features(model: Any, images: np.ndarray, batch_size: int = 32, device: Any = "cpu") -> np.ndarray:
    """(N, D) pooled branch features of preprocessed slices (what the domain statistics describe)."""
    from PETriageLib.patient.features import stage_features

    return stage_features(model, images, "embeddings", batch_size, device)[:, 1:]


def has_pooled_features(model: Any) -> bool:
    return hasattr(model, "branch_features") and hasattr(model, "fc")
