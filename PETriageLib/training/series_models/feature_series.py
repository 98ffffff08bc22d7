"""Patients as sequences of slice features, read from the training slice cache of each stage."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from PETriageLib.atomic import atomic_write
from PETriageLib.models.features import slice_features

log = logging.getLogger(__name__)


@dataclass
class PatientSeries:
    """One series of one patient: features of its slices with lung, in slice order."""

    patient_id: str
    patient_label: str  # wnl / other / pe
    features: np.ndarray  # (slices with lung, F) float32
    slice_labels: list[str]  # of those slices

    @property
    def is_pe(self) -> int:
        return int(self.patient_label == "pe")


def series_progress(items, desc: str, enabled: bool):
    """``items`` with a progress bar counted in series when enabled."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="series")


def series_from_cache(models: Sequence, metas: Sequence[dict], manifest, cache_root: "str | Path",
                      splits_file: "str | Path | None", split: str, kind: str, seed: int = 0,
                      progress: bool = False) -> list[PatientSeries]:
    """Every series of ``split``: both stages' features on each slice with lung.

    Each stage reads its own cache entry (its checkpoint's preprocessing: windows, size, context),
    built on first use as for training.
    """
    from PETriageLib.preprocess.slices import PreprocessConfig
    from PETriageLib.training.data import cached_splits

    cached = [cached_splits(manifest, PreprocessConfig.from_dict(m).to_dict(), cache_root, splits_file, seed,
                            wanted=[split])[split] for m in metas]
    ids = [[c.patient_id for c in stage] for stage in cached]
    if any(i != ids[0] for i in ids):
        raise RuntimeError("the two stages' caches hold different sources; the manifest changed meanwhile")
    out = []
    for sources in series_progress(list(zip(*cached)), f"features ({split})", progress):
        lung = np.flatnonzero(sources[0].has_lung)
        if len(lung) == 0:  # triage calls such a series not analysable; there is nothing to learn from
            log.warning("%s: no slice with lung; left out of the patient classifier's data", sources[0].patient_id)
            continue
        feats = slice_features(models, [s.images[lung] for s in sources], kind)
        out.append(PatientSeries(sources[0].patient_id, sources[0].patient_label, feats,
                                 [sources[0].labels[k] for k in lung]))
    log.info("split %s: %d series, %d slices with lung", split, len(out), sum(len(s.features) for s in out))
    return out


def features_key(metas: Sequence[dict], shas: Sequence[str], kind: str, split: str, ids: Sequence[str]) -> str:
    """Names a feature file by what made it: the stage checkpoints, the kind and the patients."""
    blob = json.dumps({"sha256": list(shas), "kind": kind, "split": split, "ids": sorted(ids)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_feature_series(series: Sequence[PatientSeries], path: "str | Path") -> None:
    arrays = {f"f{i}": s.features for i, s in enumerate(series)}
    info = [{"patient_id": s.patient_id, "patient_label": s.patient_label, "slice_labels": s.slice_labels}
            for s in series]
    atomic_write(path, lambda tmp: np.savez(tmp, info=np.array(json.dumps(info)), **arrays), suffix=".npz")


def load_feature_series(path: "str | Path") -> list[PatientSeries]:
    with np.load(path, allow_pickle=False) as data:
        info = json.loads(str(data["info"]))
        return [PatientSeries(d["patient_id"], d["patient_label"], data[f"f{i}"], d["slice_labels"])
                for i, d in enumerate(info)]
