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

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_QUANTILE = 10.0


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


def pooled_features(model: Any, images: np.ndarray, batch_size: int = 32, device: Any = "cpu") -> np.ndarray:
    """(N, D) pooled branch features of preprocessed slices (what the domain statistics describe)."""
    from PETriageLib.models.features import stage_features

    return stage_features(model, images, "embeddings", batch_size, device)[:, 1:]


def has_pooled_features(model: Any) -> bool:
    return hasattr(model, "branch_features") and hasattr(model, "fc")
