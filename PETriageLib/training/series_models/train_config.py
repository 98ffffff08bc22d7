"""Training settings of the series models (patient classifier, slice refiner)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SeriesTrainConfig:
    features: str = "scores"  # scores | embeddings | multiscale (PETriageLib.models.features)
    hidden: int = 32
    dropout: float = 0.3
    epochs: int = 25
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    noise: float = 0.1  # Gaussian noise on the standardised features while training
    patience: int = 8  # epochs without a better validation AUROC before stopping
    seed: int = 0


@dataclass
class PatientTrainConfig(SeriesTrainConfig):
    head: str = "bilstm"  # maxpool | bilstm | ensemble (both, probabilities averaged) | score (untrained)
    features: str = "embeddings"
    epochs: int = 60
    patience: int = 15
    target_sensitivity: float = 1.0  # of PE patients on validation, for the stored threshold

    def __post_init__(self) -> None:
        if self.head == "score" and self.features != "scores":
            raise ValueError(f"head 'score' reads the two stage logits: use features 'scores', not {self.features!r}")


@dataclass
class RefinerTrainConfig(SeriesTrainConfig):
    target_sensitivity: tuple = (0.95, 0.98)  # stage 1 (diseased slices), stage 2 (PE slices)
