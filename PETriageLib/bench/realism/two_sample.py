"""Classifier two-sample test: can a classifier tell real slices from phantom slices?

Every slice goes through the cascade's own preprocessing (dynamic lung crop, the vascular, lung
and mediastinal windows), then becomes a few image statistics per window. A random forest learns
real vs phantom, cross-validated by patient (a patient's slices are all in one fold), and its
out-of-fold AUROC is the score: 0.5 = indistinguishable, 1.0 = trivially told apart. Permutation
importance on the held-out folds says which statistics it leans on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.preprocess.lungs import analyse_lungs
from PETriageLib.preprocess.slices import PreprocessConfig, prepare_slices

WINDOWS = ("vascular", "lung", "mediastinal")
INPUT_SIZE = 128
STATS = ("mean", "sd", "p10", "p50", "p90", "gradient", "laplacian_sd", "high_freq", "low_clip", "high_clip")
FEATURES = tuple(f"{w}.{s}" for w in WINDOWS for s in STATS)


@dataclass(frozen=True)
class TwoSampleResult:
    """Out-of-fold AUROC of real vs phantom, per fold, and the statistics the classifier used most."""

    auroc: float
    fold_auroc: list[float]
    real_slices: int
    phantom_slices: int
    real_patients: int
    phantom_patients: int
    top_features: list[tuple[str, float]]  # (feature, mean AUROC drop when permuted)


def image_features(image: np.ndarray) -> list[float]:
    """STATS of one windowed crop in [-1, 1]."""
    p10, p50, p90 = np.percentile(image, [10, 50, 90])
    gy, gx = np.gradient(image)
    lap = image[1:-1, 1:-1] * 4 - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2] - image[1:-1, 2:]
    spectrum = np.abs(np.fft.fft2(image - image.mean())) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1]), indexing="ij"))
    high = float(spectrum[f > 0.25].sum() / max(spectrum.sum(), 1e-12))
    return [float(image.mean()), float(image.std()), float(p10), float(p50), float(p90),
            float(np.hypot(gy, gx).mean()), float(lap.std()), high,
            float((image <= -0.999).mean()), float((image >= 0.999).mean())]


def slice_features(volume: CTVolume, max_slices: int = 40, seed: int = 0) -> np.ndarray:
    """(N, len(FEATURES)) for up to ``max_slices`` lung slices of ``volume``, spread over the lungs."""
    lungs = analyse_lungs(volume)
    with_lung = [k for k, s in enumerate(lungs) if s.has_lung]
    if not with_lung:
        return np.zeros((0, len(FEATURES)), np.float32)
    if len(with_lung) > max_slices:
        rng = np.random.default_rng(seed)
        with_lung = sorted(rng.choice(with_lung, max_slices, replace=False).tolist())
    config = PreprocessConfig(windows=list(WINDOWS), input_size=INPUT_SIZE)
    rows = []
    for start in range(0, len(with_lung), 16):
        prepared = prepare_slices(volume, with_lung[start:start + 16], config, lungs)
        rows += [[x for w in range(len(WINDOWS)) for x in image_features(img[w])] for img in prepared.images]
    return np.asarray(rows, np.float32)


def two_sample_test(real: Sequence[tuple[str, np.ndarray]], phantom: Sequence[tuple[str, np.ndarray]],
                    seed: int = 0, trees: int = 200) -> TwoSampleResult:
    """real / phantom: (patient id, slice features) per series; a patient may have several series."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    parts = [(pid, f, 1) for pid, f in real if len(f)] + [(f"phantom:{pid}", f, 0) for pid, f in phantom if len(f)]
    x = np.concatenate([f for _, f, _ in parts])
    y = np.concatenate([np.full(len(f), label) for _, f, label in parts])
    groups = np.concatenate([np.full(len(f), pid, dtype=object) for pid, f, _ in parts])
    real_patients = len({pid for pid, _, label in parts if label == 1})
    phantom_patients = len({pid for pid, _, label in parts if label == 0})
    if real_patients < 2 or phantom_patients < 2:
        raise ValueError(f"the test needs at least 2 real and 2 phantom patients, got {real_patients} and "
                         f"{phantom_patients}")
    folds = GroupKFold(n_splits=min(real_patients, phantom_patients, 5))
    scores = np.zeros(len(y))
    fold_auroc, importance = [], np.zeros(x.shape[1])
    for train, test in folds.split(x, y, groups):
        forest = RandomForestClassifier(n_estimators=trees, min_samples_leaf=2, class_weight="balanced",
                                        random_state=seed, n_jobs=1)
        forest.fit(x[train], y[train])
        scores[test] = forest.predict_proba(x[test])[:, 1]
        if len(set(y[test])) == 2:
            fold_auroc.append(float(roc_auc_score(y[test], scores[test])))
            drop = permutation_importance(forest, x[test], y[test], scoring="roc_auc", n_repeats=3,
                                          random_state=seed, n_jobs=1)
            importance += drop.importances_mean
    importance /= max(len(fold_auroc), 1)
    order = np.argsort(importance)[::-1][:5]
    return TwoSampleResult(float(roc_auc_score(y, scores)), fold_auroc, int(y.sum()), int(len(y) - y.sum()),
                           real_patients, phantom_patients,
                           [(FEATURES[i], round(float(importance[i]), 4)) for i in order])
