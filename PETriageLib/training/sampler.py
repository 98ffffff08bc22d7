"""Which slices each rank trains on at each step: one class-balanced (or shuffled) order per
epoch, seeded by (seed, epoch) and the same on every rank, cut into global batches of
``batch_size x world_size`` slices; rank r takes the r-th part of each, and splits it again into
its micro-batches.

So the class balancing and the seeding are those of one process with the effective batch, and
a group of slices (one micro-batch on one rank) has the same global index ``rank x micro_batches
+ k`` whichever way the effective batch is spread over ranks and micro-batches: 2 ranks x 8
slices train on the same groups as 1 process x 16 slices in 2 micro-batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np


def epoch_order(targets: np.ndarray, balance: str, seed: int, epoch: int, steps: int, batch: int) -> np.ndarray:
    """``steps x batch`` sample indices for one epoch: class-balanced draws or shuffled passes."""
    rng = np.random.default_rng([seed, epoch])
    n = len(targets)
    if balance == "sampler":
        counts = np.bincount(targets, minlength=2).astype(float)
        weights = 1.0 / np.maximum(counts[targets], 1.0)
        return rng.choice(n, size=steps * batch, replace=True, p=weights / weights.sum())
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(steps * batch / n))])
    return order[: steps * batch]


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's effective batch is spread: per-rank batch, ranks, micro-batches."""

    batch_size: int  # slices per rank per step
    world_size: int = 1
    rank: int = 0
    micro_batches: int = 1

    def __post_init__(self) -> None:
        if self.micro_batches < 1 or self.batch_size % self.micro_batches:
            raise ValueError(f"batch size {self.batch_size} does not split into {self.micro_batches} micro-batches")

    @property
    def effective(self) -> int:
        return self.batch_size * self.world_size

    def steps_per_epoch(self, n: int, steps: "int | None") -> int:
        return steps or math.ceil(n / self.effective)

    def rank_rows(self, order: np.ndarray, step: int) -> np.ndarray:
        start = step * self.effective + self.rank * self.batch_size
        return order[start:start + self.batch_size]

    def groups(self, rows: np.ndarray) -> "list[tuple[int, np.ndarray]]":
        """This rank's micro-batches of ``rows``, each with its global group index."""
        size = self.batch_size // self.micro_batches
        return [(self.rank * self.micro_batches + k, rows[k * size:(k + 1) * size]) for k in range(self.micro_batches)]

