"""Patient classifiers over a series of slice features (B, S, F) with a mask of real slices.

``maxpool``: a small per-slice network, then the maximum over the slices: the learned form of
"a patient is positive when a slice is". ``bilstm``: a bidirectional LSTM over the slices in
order, so a slice's score sees its neighbours (a clot runs through adjacent slices; noise does
not), then the maximum over the slices. ``ensemble``: both, their probabilities averaged. Features are standardised with the training split's
mean and spread, kept as buffers so the checkpoint carries them.
"""
from __future__ import annotations

import torch
from torch import nn

HEADS = ("maxpool", "bilstm")
ENSEMBLE_HEADS = HEADS  # the members of head "ensemble"


class PatientClassifier(nn.Module):
    def __init__(self, in_features: int, head: str = "bilstm", hidden: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.head, self.in_features, self.hidden = head, int(in_features), int(hidden)
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU())
        if head == "bilstm":
            self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
            pooled = 2 * hidden
        else:
            self.lstm = None
            pooled = hidden
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(pooled, 1))

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Mean and spread of the training slices' features (N, F)."""
        self.mean.copy_(features.mean(dim=0))
        self.scale.copy_(features.std(dim=0).clamp_min(1e-3))

    def slice_states(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, H) per-slice embeddings of the standardised features."""
        return self.embed((x - self.mean) / self.scale)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Patient logits (B,) from features (B, S, F) and mask (B, S), True on real slices first."""
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected (B, S, {self.in_features}) features, got {tuple(x.shape)}")
        z = self.slice_states(x)
        if self.lstm is not None:  # packed, so the backward direction starts at each series' last slice
            from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

            packed = pack_padded_sequence(z, mask.sum(dim=1).cpu(), batch_first=True, enforce_sorted=False)
            z, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        z = z.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return self.out(z).squeeze(-1)


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


def build_patient_model(in_features: int, head: str, hidden: int = 32,
                        dropout: float = 0.3) -> "PatientClassifier | PatientEnsemble":
    """An untrained classifier of that head (``ensemble``: one member per ENSEMBLE_HEADS)."""
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
