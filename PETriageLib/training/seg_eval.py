"""Segmentation evaluation: pixel Dice / precision / recall, lesion-wise detection per lesion class,
patient sensitivity / specificity, and the table of the segmentation papers.

A lesion is one connected component of the reference mask (scipy.ndimage.label; within a slice for
slice stacks, in 3D for a volume). It counts as found when the predicted mask overlaps it by at
least one voxel. Lesion classes are size classes of the reference component (``SIZE_CLASSES``,
in pixels): phantom emboli carry a level (main, lobar, ...) but not per voxel, so size stands in.
A patient is predicted positive when any of its slices has a predicted component of at least
``min_pixels``; it is truly positive when its reference mask has any embolus voxel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from PETriageLib.training.tables import markdown_table

SIZE_CLASSES = (("small", 0, 10), ("medium", 10, 40), ("large", 40, None))  # component pixels: [lo, hi)


@dataclass
class PixelScores:
    dice: float
    precision: float
    recall: float
    lesions: int  # reference components
    found: int  # of them, overlapped by the prediction

    @property
    def lesion_sensitivity(self) -> float:
        return self.found / self.lesions if self.lesions else float("nan")


@dataclass
class SegEvaluation:
    overall: PixelScores
    by_class: dict[str, PixelScores] = field(default_factory=dict)
    false_positive_components: int = 0  # predicted components touching no reference lesion
    patients_positive: int = 0
    patients_negative: int = 0
    true_positive_patients: int = 0
    true_negative_patients: int = 0
    threshold: float = 0.5

    @property
    def patient_sensitivity(self) -> float:
        return self.true_positive_patients / self.patients_positive if self.patients_positive else float("nan")

    @property
    def patient_specificity(self) -> float:
        return self.true_negative_patients / self.patients_negative if self.patients_negative else float("nan")


def ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def _scores(pred: np.ndarray, ref: np.ndarray, lesions: int, found: int) -> PixelScores:
    tp = float(np.count_nonzero(pred & ref))
    return PixelScores(ratio(2 * tp, np.count_nonzero(pred) + np.count_nonzero(ref)),
                       ratio(tp, np.count_nonzero(pred)), ratio(tp, np.count_nonzero(ref)), lesions, found)


def _structure(ndim: int, per_slice: bool) -> np.ndarray:
    s = ndimage.generate_binary_structure(ndim, 1)
    if per_slice and ndim == 3:
        s[0] = s[2] = False  # components do not join across slices
    return s


def size_class(pixels: int) -> str:
    for name, lo, hi in SIZE_CLASSES:
        if pixels >= lo and (hi is None or pixels < hi):
            return name
    raise ValueError(f"no size class for {pixels} pixels")


def evaluate_segmentation(prob: np.ndarray, reference: np.ndarray, patient: "Sequence[int] | None" = None,
                          threshold: float = 0.5, per_slice: bool = True, min_pixels: int = 1) -> SegEvaluation:
    """Scores of predicted embolus probabilities ``prob`` against the 0/1 ``reference`` (same shape:
    (N, H, W) slices, (N, 1, H, W), or one (k, j, i) volume with ``per_slice=False``)."""
    prob, reference = np.asarray(prob), np.asarray(reference)
    if prob.shape != reference.shape:
        raise ValueError(f"prediction {prob.shape} and reference {reference.shape} differ in shape")
    if prob.ndim == 4:
        prob, reference = prob[:, 0], reference[:, 0]
    pred, ref = prob >= threshold, reference > 0
    structure = _structure(ref.ndim, per_slice)
    ref_labels, n_ref = ndimage.label(ref, structure)
    pred_labels, n_pred = ndimage.label(pred, structure)
    ids = np.arange(1, n_ref + 1)
    sizes = ndimage.sum_labels(np.ones_like(ref_labels), ref_labels, ids).astype(int)
    hit = ndimage.maximum(pred, ref_labels, ids).astype(bool) if n_ref else np.zeros(0, bool)
    touching = set(np.unique(pred_labels[ref & pred]).tolist()) - {0}
    result = SegEvaluation(_scores(pred, ref, n_ref, int(hit.sum())), threshold=threshold,
                           false_positive_components=n_pred - len(touching))
    classes = np.array([size_class(int(s)) for s in sizes]) if n_ref else np.zeros(0, str)
    for name, _, _ in SIZE_CLASSES:
        members = ids[classes == name]
        if not len(members):
            continue
        class_ref = np.isin(ref_labels, members)
        overlapping = np.unique(pred_labels[class_ref & pred])
        class_pred = np.isin(pred_labels, overlapping[overlapping > 0])
        result.by_class[name] = _scores(class_pred, class_ref, len(members), int(hit[classes == name].sum()))
    if patient is not None:
        _patient_counts(result, pred_labels, ref, np.asarray(patient), min_pixels)
    return result


def _patient_counts(result: SegEvaluation, pred_labels: np.ndarray, ref: np.ndarray, patient: np.ndarray,
                    min_pixels: int) -> None:
    if len(patient) != len(ref):
        raise ValueError(f"{len(patient)} patient ids for {len(ref)} slices")
    sizes = np.bincount(pred_labels.ravel())
    big = np.flatnonzero(sizes >= min_pixels)
    big = big[big > 0]
    flagged = np.isin(pred_labels, big)
    for p in np.unique(patient):
        rows = patient == p
        truth, called = bool(ref[rows].any()), bool(flagged[rows].any())
        if truth:
            result.patients_positive += 1
            result.true_positive_patients += int(called)
        else:
            result.patients_negative += 1
            result.true_negative_patients += int(not called)


def pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.1f}"


def segmentation_table(rows: Sequence["tuple[str, SegEvaluation]"]) -> str:
    """Markdown table, one row per model (the papers' layout: Dice, precision, recall in %, lesion
    detection, patient sensitivity and specificity)."""
    head = ["Model", "Dice (%)", "Precision (%)", "Recall (%)", "Lesions found", "FP comps",
            "Patient sens. (%)", "Patient spec. (%)"]
    body = []
    for name, ev in rows:
        o = ev.overall
        body.append([name, pct(o.dice), pct(o.precision), pct(o.recall), f"{o.found}/{o.lesions}",
                     str(ev.false_positive_components), pct(ev.patient_sensitivity),
                     pct(ev.patient_specificity)])
    return markdown_table(head, body)


def lesion_class_table(ev: SegEvaluation) -> str:
    """Per lesion (size) class: Dice, precision, recall and lesions found."""
    body = [[name, pct(s.dice), pct(s.precision), pct(s.recall), f"{s.found}/{s.lesions}"]
            for name, s in ev.by_class.items()]
    return markdown_table(["Lesion class", "Dice (%)", "Precision (%)", "Recall (%)", "Found"], body)
