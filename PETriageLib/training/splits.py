"""Patient-wise train/val/test splits (never by slice), stratified by patient label and seeded."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from PETriageLib.atomic import atomic_write
from PETriageLib.errors import PETriageError

log = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "val", "test")


class SplitOverlapError(PETriageError):
    """A patient appears in more than one split: results would be optimistic."""


def _allocate(n: int, ratios: Sequence[float]) -> list[int]:
    """Split n items by ratios with the largest-remainder rule (counts sum to n)."""
    r = np.asarray(ratios, float) / float(sum(ratios))
    exact = r * n
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    return counts.tolist()


def split_patients(patient_labels: Mapping[str, str], ratios: Sequence[float] = (5, 3, 2),
                   seed: int = 0) -> dict[str, list[str]]:
    """Assign each patient to train/val/test; within each patient label the ratios hold."""
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers (train, val, test), got {ratios}")
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for label in sorted(set(patient_labels.values())):
        ids = sorted(p for p, lab in patient_labels.items() if lab == label)
        ids = [ids[i] for i in rng.permutation(len(ids))]
        start = 0
        for name, count in zip(SPLIT_NAMES, _allocate(len(ids), ratios)):
            out[name].extend(ids[start:start + count])
            start += count
    for name in SPLIT_NAMES:
        out[name].sort()
    check_disjoint(out)
    return out


def check_disjoint(splits: Mapping[str, Sequence[str]]) -> None:
    """Raise SplitOverlapError naming every patient found in two or more splits."""
    seen: dict[str, str] = {}
    clashes = []
    for name, ids in splits.items():
        for pid in ids:
            if pid in seen and seen[pid] != name:
                clashes.append(f"{pid} ({seen[pid]} and {name})")
            seen.setdefault(pid, name)
    if clashes:
        raise SplitOverlapError(f"patients in more than one split: {', '.join(clashes[:20])}"
                                + (f" and {len(clashes) - 20} more" if len(clashes) > 20 else ""))


def save_splits(splits: Mapping[str, Sequence[str]], path: "str | Path") -> None:
    check_disjoint(splits)
    text = json.dumps({k: list(v) for k, v in splits.items()}, indent=1)
    atomic_write(path, lambda tmp: tmp.write_text(text))  # parallel runs sharing a splits file never read half of it


def load_splits(path: "str | Path") -> dict[str, list[str]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PETriageError(f"cannot read splits file {path}: {exc}") from exc
    splits = {k: [str(p) for p in v] for k, v in data.items()}
    check_disjoint(splits)
    return splits
