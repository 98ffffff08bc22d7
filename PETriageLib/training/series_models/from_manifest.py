"""From a manifest and a stage 1 + stage 2 pair to a trained patient classifier, and its evaluation."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from PETriageLib.training.series_models.train_config import PatientTrainConfig, RefinerTrainConfig
from PETriageLib.training.series_models.feature_series import PatientSeries, load_feature_series, save_feature_series, series_from_cache
from PETriageLib.models.series_checkpoint import load_patient_classifier
from PETriageLib.training.series_models.patient import predict_series, save_patient_classifier, train_patient_classifier
from PETriageLib.training.cache_admin import touch

log = logging.getLogger(__name__)


def features_path(stages: Sequence, manifest, splits_file: "str | Path | None", split: str, kind: str,
                  feature_dir: "str | Path", seed: int = 0) -> Path:
    """Where a split's features are kept: a name made of what they depend on (the stage files'
    SHA256, the kind, the split, and each of its sources as the slice cache fingerprints them:
    files, sizes, times, labels). Edited labels or images give a new name, never stale features."""
    from PETriageLib.training.cache import source_fingerprint
    from PETriageLib.training.data import make_splits
    from PETriageLib.training.manifest import load_manifest

    sources = load_manifest(manifest)
    ids = set(make_splits(sources, splits_file, seed=seed).get(split, []))
    blob = json.dumps({"sha256": [s.sha256 for s in stages], "kind": kind, "split": split,
                       "sources": [source_fingerprint(s) for s in sources if s.patient_id in ids]},
                      sort_keys=True, default=str)
    return Path(feature_dir) / f"{split}-{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.npz"


def split_series(stages: Sequence, manifest, cache_root: "str | Path", splits_file: "str | Path | None",
                 split: str, kind: str, feature_dir: "str | Path | None" = None, seed: int = 0,
                 progress: bool = False) -> list[PatientSeries]:
    """The split's feature series, read from ``feature_dir`` when computed before (else kept there)."""
    path = None
    if feature_dir is not None:
        path = features_path(stages, manifest, splits_file, split, kind, feature_dir, seed)
        if path.is_file():
            log.info("features of split %s from %s", split, path)
            touch(path)  # last use, for `petriage cache prune`
            return load_feature_series(path)
    series = series_from_cache([s.model for s in stages], [s.meta for s in stages], manifest, cache_root,
                               splits_file, split, kind, seed, progress)
    if path is not None:
        save_feature_series(series, path)
    return series


def _training_series(stage1: str, stage2: str, manifest, cache_root: "str | Path",
                     splits_file: "str | Path | None", kind: str, feature_dir: Path, seed: int,
                     progress: bool, splits: Sequence[str] = ("train", "val")
                     ) -> "tuple[list, dict[str, list[PatientSeries]]]":
    """The two stages and the series of their features for ``splits`` (others: empty)."""
    from PETriageLib.triage.stages import load_stage

    if not splits_file or not Path(splits_file).is_file():
        raise FileNotFoundError(f"splits file {splits_file} not found: give one whose val patients the stage "
                                "models never saw (the splits they were trained with, or a new one for new data)")
    stages = [load_stage(1, stage1), load_stage(2, stage2)]
    return stages, {name: split_series(stages, manifest, cache_root, splits_file, name, kind, feature_dir, seed,
                                       progress) if name in splits else [] for name in ("train", "val")}


def _train_from_manifest(what: str, file_name: str, train_fn, save_fn, stage1: str, stage2: str, manifest,
                         out_dir: "str | Path", cache_root: "str | Path", splits_file: "str | Path | None", cfg,
                         progress: bool, feature_dir: "str | Path | None",
                         splits: Sequence[str] = ("train", "val")) -> dict:
    out = Path(out_dir)
    stages, series = _training_series(stage1, stage2, manifest, cache_root, splits_file, cfg.features,
                                      Path(feature_dir or out / "features"), cfg.seed, progress, splits)
    model, summary, history = train_fn(series["train"], series["val"], cfg, progress)
    summary["train_patients"] = len(series["train"])
    path = save_fn(out / file_name, model, cfg, summary, [{"sha256": s.sha256, "path": s.path} for s in stages])
    (out / "history.json").write_text(json.dumps({"config": asdict(cfg), "history": history, "best": summary},
                                                 indent=1))
    log.info("%s written to %s", what, path)
    return {"path": str(path), **summary}


def train_patient_from_manifest(stage1: str, stage2: str, manifest, out_dir: "str | Path",
                                cache_root: "str | Path", splits_file: "str | Path | None",
                                cfg: PatientTrainConfig, progress: bool = False,
                                feature_dir: "str | Path | None" = None) -> dict:
    """Train on the ``train`` split, choose epoch and threshold on ``val``; write OUT/patient.pt and
    OUT/history.json. The splits file must exist (see ``_training_series``).
    ``feature_dir`` (default OUT/features) keeps the slice features for further runs."""
    return _train_from_manifest("patient classifier", "patient.pt", train_patient_classifier,
                                save_patient_classifier, stage1, stage2, manifest, out_dir, cache_root,
                                splits_file, cfg, progress, feature_dir,
                                ("val",) if cfg.head == "score" else ("train", "val"))  # score: nothing to train


def train_refiner_from_manifest(stage1: str, stage2: str, manifest, out_dir: "str | Path",
                                cache_root: "str | Path", splits_file: "str | Path | None",
                                cfg: RefinerTrainConfig, progress: bool = False,
                                feature_dir: "str | Path | None" = None) -> dict:
    """As ``train_patient_from_manifest``, for the slice refiner: OUT/refiner.pt and OUT/history.json."""
    from PETriageLib.training.series_models.refiner import save_slice_refiner, train_slice_refiner

    return _train_from_manifest("slice refiner", "refiner.pt", train_slice_refiner, save_slice_refiner, stage1,
                                stage2, manifest, out_dir, cache_root, splits_file, cfg, progress, feature_dir)


def patient_classifier_report(path: "str | Path", stages: Sequence, manifest, cache_root: "str | Path",
                              splits_file: "str | Path | None", split: str, n_boot: int = 1000,
                              seed: int = 0) -> dict:
    """Sensitivity and specificity at the classifier's threshold, and its AUROC, on ``split``
    (features kept in CACHE_ROOT/patient-features for the next classifier)."""
    from PETriageLib.training.metrics import auroc_ci, fmt_count

    model, meta = load_patient_classifier(path, [s.identities() for s in stages])
    series = split_series(stages, manifest, cache_root, splits_file, split, meta["features"],
                          Path(cache_root) / "patient-features", seed)
    p = predict_series(model, series)
    y = np.array([s.is_pe for s in series])
    flagged = p >= meta["threshold"]
    wnl = np.array([s.patient_label == "wnl" for s in series])
    return {"classifier": str(path), "head": meta["head"], "features": meta["features"],
            "threshold": meta["threshold"],
            "sensitivity": fmt_count(int(flagged[y == 1].sum()), int((y == 1).sum())),
            "specificity": fmt_count(int((~flagged[y == 0]).sum()), int((y == 0).sum())),
            "specificity_other": fmt_count(int((~flagged[(y == 0) & ~wnl]).sum()), int(((y == 0) & ~wnl).sum())),
            "specificity_wnl": fmt_count(int((~flagged[wnl]).sum()), int(wnl.sum())),
            "auroc": auroc_ci(y, p, n_boot, seed),
            "patients": [{"patient_id": s.patient_id, "label": s.patient_label, "p_pe": float(q)}
                         for s, q in zip(series, p)]}
