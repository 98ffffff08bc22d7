"""Models over a series of slice features (B, S, F) with a mask of real slices.

Patient classifiers: ``maxpool``: a small per-slice network, then the maximum over the slices: the learned form of
"a patient is positive when a slice is". ``bilstm``: a bidirectional LSTM over the slices in
order, so a slice's score sees its neighbours (a clot runs through adjacent slices; noise does
not), then the maximum over the slices. ``ensemble``: both, their probabilities averaged.
``score``: no weights, the cascade's own patient score (the highest p(disease) x p(PE) on a
slice), given a patient operating point on validation like the others.
The slice refiner re-scores each slice instead (``SliceRefiner``). Features are standardised
with the training split's mean and spread, kept as buffers so the checkpoint carries them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

HEADS = ("maxpool", "bilstm")
ENSEMBLE_HEADS = HEADS  # the members of head "ensemble"


class SeriesEncoder(nn.Module):
    """Standardised features -> per-slice states (B, S, out_features): a small embedding, and with
    ``recurrent`` a bidirectional LSTM over the slices whose states are joined to the embedding."""

    def __init__(self, in_features: int, hidden: int, dropout: float, recurrent: bool) -> None:
        super().__init__()
        self.in_features, self.hidden = int(in_features), int(hidden)
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU())
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True) if recurrent else None
        self.out_features = 3 * hidden if recurrent else hidden

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Mean and spread of the training slices' features (N, F)."""
        self.mean.copy_(features.mean(dim=0))
        self.scale.copy_(features.std(dim=0).clamp_min(1e-3))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected (B, S, {self.in_features}) features, got {tuple(x.shape)}")
        z = self.embed((x - self.mean) / self.scale)
        if self.lstm is None:
            return z
        # packed, so the backward direction starts at each series' own last slice, not at padding
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        packed = pack_padded_sequence(z, mask.sum(dim=1).cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        return torch.cat([h, z], dim=-1)


class _EncodedSeriesModel(nn.Module):
    """A SeriesEncoder and what training needs of it (the feature spread, standardisation)."""

    def __init__(self, in_features: int, hidden: int, dropout: float, recurrent: bool) -> None:
        super().__init__()
        self.in_features, self.hidden = int(in_features), int(hidden)
        self.encoder = SeriesEncoder(in_features, hidden, dropout, recurrent)

    @property
    def scale(self) -> torch.Tensor:
        return self.encoder.scale

    def set_standardisation(self, features: torch.Tensor) -> None:
        self.encoder.set_standardisation(features)


class PatientClassifier(_EncodedSeriesModel):
    """Per-slice states, their maximum over the series, a linear layer: one PE logit per series."""

    def __init__(self, in_features: int, head: str = "bilstm", hidden: int = 32, dropout: float = 0.3) -> None:
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        super().__init__(in_features, hidden, dropout, recurrent=head == "bilstm")
        self.head = head
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.out_features, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Patient logits (B,) from features (B, S, F) and mask (B, S), True on real slices first."""
        z = self.encoder(x, mask).masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return self.out(z).squeeze(-1)


class SliceRefiner(_EncodedSeriesModel):
    """Re-scores every slice for both stages with the whole series in view: a bidirectional LSTM
    over the slice features, then per slice the logits of p(disease) and p(PE) (B, S, 2).

    A clot a few pixels wide on one slice is hard to tell from a vessel leaving the slice; the
    same vessel clotted on the neighbouring slices is not. The LSTM lets each slice's score use
    its neighbours' features, like the sequence models over slice embeddings in RSNA-PE work.
    """

    head = "refiner"

    def __init__(self, in_features: int, hidden: int = 32, dropout: float = 0.3) -> None:
        super().__init__(in_features, hidden, dropout, recurrent=True)
        self.out = nn.Linear(self.encoder.out_features, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Slice logits (B, S, 2): [disease, pe]; padded slices carry values to ignore."""
        return self.out(self.encoder(x, mask))


class PatientEnsemble(nn.Module):
    """Several patient classifiers on the same features; p(PE) is the mean of their probabilities."""

    head = "ensemble"

    def __init__(self, members: "list[PatientClassifier]") -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.in_features, self.hidden = members[0].in_features, members[0].hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B,) of the mean member probability."""
        p = torch.stack([torch.sigmoid(m(x, mask)) for m in self.members]).mean(dim=0)
        return torch.logit(p, eps=1e-6)


class CascadeScore(nn.Module):
    """The fixed rule's patient score as a classifier: max over slices of p(disease) x p(PE), from
    ``scores`` features (each stage's logit). Nothing to train; only its threshold is chosen."""

    head = "score"

    def __init__(self, in_features: int = 2) -> None:
        super().__init__()
        if in_features != 2:
            raise ValueError(f"head 'score' reads the two stage logits (features 'scores'), got {in_features} "
                             "features per slice")
        self.in_features, self.hidden = 2, 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B,) of the highest p(disease) x p(PE) among each series' real slices."""
        p = (torch.sigmoid(x[..., 0]) * torch.sigmoid(x[..., 1])).masked_fill(~mask, 0.0)
        return torch.logit(p.amax(dim=1), eps=1e-6)


def build_patient_model(in_features: int, head: str, hidden: int = 32,
                        dropout: float = 0.3) -> "PatientClassifier | PatientEnsemble | CascadeScore":
    """An untrained classifier of that head (``ensemble``: one member per ENSEMBLE_HEADS)."""
    if head == "score":
        return CascadeScore(in_features)
    if head == "ensemble":
        return PatientEnsemble([PatientClassifier(in_features, h, hidden, dropout) for h in ENSEMBLE_HEADS])
    return PatientClassifier(in_features, head, hidden, dropout)


def pad_batch(series: "list[torch.Tensor]") -> "tuple[torch.Tensor, torch.Tensor]":
    """(B, S_max, F) zero-padded features and the (B, S_max) mask of real slices."""
    if any(len(s) == 0 for s in series):
        raise ValueError("a series without slices cannot be classified")
    longest = max(len(s) for s in series)
    x = torch.zeros(len(series), longest, series[0].shape[1])
    mask = torch.zeros(len(series), longest, dtype=torch.bool)
    for i, s in enumerate(series):
        x[i, :len(s)] = s
        mask[i, :len(s)] = True
    return x, mask


def _batches(features: Sequence[np.ndarray], batch_size: int):
    for i in range(0, len(features), batch_size):
        yield pad_batch([torch.from_numpy(np.asarray(f, np.float32)) for f in features[i:i + batch_size]])


@torch.no_grad()
def predict_patients(model: nn.Module, features: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """p(PE) per series, from each series' (slices, F) features (a patient classifier)."""
    model.eval()
    out = [torch.sigmoid(model(x, mask)).numpy() for x, mask in _batches(features, batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def refine_slices(model: nn.Module, features: Sequence[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
    """Per series: (slices, 2) refined [p(disease), p(PE)] from its (slices, F) features (a slice refiner)."""
    model.eval()
    out: list[np.ndarray] = []
    for x, mask in _batches(features, batch_size):
        p = torch.sigmoid(model(x, mask)).numpy()
        out += [p[i, :int(n)] for i, n in enumerate(mask.sum(dim=1))]
    return out
