"""Binary classification metrics formatted the way the paper reports them: "96.1% (521/542)"."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score, roc_curve


def fmt_count(correct: int, total: int) -> str:
    """Percentage with one decimal and the counts behind it; "n/a (0/0)" for an empty class."""
    if total == 0:
        return "n/a (0/0)"
    return f"{100.0 * correct / total:.1f}% ({correct}/{total})"


def wilson_interval(k: int, n: int) -> "tuple[float, float]":
    """Wilson 95% interval of the proportion k/n ((nan, nan) when n is 0): honest at the small
    patient counts of a validation or test split, where the normal approximation is not."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(method="wilson")
    return float(ci.low), float(ci.high)


def fmt_count_ci(correct: int, total: int) -> str:
    """``fmt_count`` with the Wilson 95% interval: "95.0% (76-99; 19/20)"."""
    if total == 0:
        return "n/a (0/0)"
    low, high = wilson_interval(correct, total)
    return f"{100.0 * correct / total:.1f}% ({100 * low:.0f}-{100 * high:.0f}; {correct}/{total})"


def auroc_ci(y_true: np.ndarray, y_prob: np.ndarray, n_boot: int = 1000, seed: int = 0,
             alpha: float = 0.05) -> dict:
    """AUROC with a percentile bootstrap (1 - alpha) confidence interval; None when one class is absent."""
    y_true = np.asarray(y_true, int)
    y_prob = np.asarray(y_prob, float)
    if len(np.unique(y_true)) < 2:
        return {"auroc": None, "ci_low": None, "ci_high": None, "n_boot": 0}
    auc = float(roc_auc_score(y_true, y_prob))
    rng = np.random.default_rng(seed)
    boots = []
    n = len(y_true)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if y_true[idx].min() == y_true[idx].max():  # a resample with one class has no AUROC
            continue
        boots.append(roc_auc_score(y_true[idx], y_prob[idx]))
    lo, hi = (np.quantile(boots, [alpha / 2, 1 - alpha / 2]) if boots else (auc, auc))
    return {"auroc": auc, "ci_low": float(lo), "ci_high": float(hi), "n_boot": len(boots)}


def calibration(y_true: np.ndarray, y_prob: np.ndarray, bins: int = 10) -> dict:
    """Reliability bins, expected calibration error and Brier score."""
    y_true = np.asarray(y_true, float)
    y_prob = np.asarray(y_prob, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(y_prob, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        conf, freq = float(y_prob[sel].mean()), float(y_true[sel].mean())
        ece += sel.mean() * abs(conf - freq)
        rows.append({"bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "count": int(sel.sum()),
                     "mean_prob": conf, "observed": freq})
    brier = float(brier_score_loss(y_true, y_prob)) if len(y_true) else None
    return {"ece": float(ece), "brier": brier, "bins": rows}


def threshold_counts(y_true: Sequence[int], y_prob: Sequence[float], threshold: float,
                     class_names: Sequence[str]) -> dict:
    """Accuracy, per-class sensitivity (recall of each class) and confusion matrix at one threshold.

    Index 1 of ``class_names`` is the positive class, predicted when prob >= threshold.
    """
    y_true = np.asarray(y_true, int)
    y_pred = (np.asarray(y_prob, float) >= threshold).astype(int)
    cm = confusion_matrix(y_true, y_pred, labels=[0, 1])
    correct = int(np.trace(cm))
    per_class = {}
    for k, name in enumerate(class_names):
        per_class[name] = {"correct": int(cm[k, k]), "total": int(cm[k].sum()),
                           "text": fmt_count(int(cm[k, k]), int(cm[k].sum()))}
    return {
        "threshold": float(threshold),
        "n": int(len(y_true)),
        "accuracy": {"correct": correct, "total": int(len(y_true)), "text": fmt_count(correct, len(y_true))},
        "per_class": per_class,
        "confusion_matrix": {"labels": list(class_names), "rows_true_cols_pred": cm.tolist()},
    }


def operating_point(y_true: Sequence[int], y_prob: Sequence[float], threshold: float,
                    class_names: Sequence[str]) -> dict:
    """One table row of ``threshold_counts``: the threshold, accuracy and each class's sensitivity as texts."""
    counts = threshold_counts(y_true, y_prob, threshold, class_names)
    return {"threshold": counts["threshold"], "accuracy": counts["accuracy"]["text"],
            **{name: v["text"] for name, v in counts["per_class"].items()}}


def binary_report(y_true: Sequence[int], y_prob: Sequence[float], threshold: float,
                  class_names: Sequence[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """``threshold_counts`` plus AUROC with its bootstrap CI and calibration."""
    y_true = np.asarray(y_true, int)
    y_prob = np.asarray(y_prob, float)
    return {**threshold_counts(y_true, y_prob, threshold, class_names),
            "auroc": auroc_ci(y_true, y_prob, n_boot=n_boot, seed=seed),
            "calibration": calibration(y_true, y_prob)}


def threshold_for_sensitivity(y_true: Sequence[int], y_prob: Sequence[float], target: float) -> float:
    """Highest threshold whose sensitivity on the positives is >= target (0.5 when no positives)."""
    y_true = np.asarray(y_true, int)
    pos = np.sort(np.asarray(y_prob, float)[y_true == 1])
    if len(pos) == 0:
        return 0.5
    # Allow at most floor((1 - target) * n) positives below the threshold.
    misses = int(np.floor((1.0 - target) * len(pos) + 1e-9))
    return float(pos[misses])


def roc_points(y_true: Sequence[int], y_prob: Sequence[float]) -> "tuple[np.ndarray, np.ndarray]":
    fpr, tpr, _ = roc_curve(np.asarray(y_true, int), np.asarray(y_prob, float))
    return fpr, tpr
