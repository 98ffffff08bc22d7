"""Volume-wise embolus segmentation scores on real-anatomy phantoms: voxel Dice / precision /
recall, clot-wise detection per clot level (main, lobar, segmental, subsegmental), false-positive
components, and patient sensitivity / specificity with Wilson 95% intervals.

A clot is one placed embolus (``Study.clot_ids``); it counts as found when the predicted mask
overlaps it by one voxel. The predicted mask is ``prob >= threshold`` with 3D components smaller
than ``min_component_ml`` dropped, as triage does (triage/embolus.embolus_result). A patient is
called positive when any component is left. The operating point (threshold, minimum component) is
chosen on validation studies (``choose_operating_point``), never on the test set.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

import numpy as np

from PETriageLib.phantom.centrelines import LEVELS
from PETriageLib.phantom.study import Study
from PETriageLib.training.seg_eval import pct, ratio
from PETriageLib.training.metrics import wilson_interval
from PETriageLib.training.tables import markdown_table
from PETriageLib.triage.embolus import large_components


@dataclass
class LevelCounts:
    clots: int = 0
    found: int = 0
    voxels: int = 0
    voxels_hit: int = 0


@dataclass
class VolumeEvaluation:
    threshold: float
    min_component_ml: float
    tp: int = 0
    fp: int = 0
    fn: int = 0
    levels: dict[str, LevelCounts] = field(default_factory=lambda: {lv: LevelCounts() for lv in LEVELS})
    fp_components: int = 0
    patients_positive: int = 0
    patients_negative: int = 0
    true_positive_patients: int = 0
    true_negative_patients: int = 0

    @property
    def dice(self) -> float:
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def clots(self) -> int:
        return sum(c.clots for c in self.levels.values())

    @property
    def clots_found(self) -> int:
        return sum(c.found for c in self.levels.values())

    @property
    def sensitivity(self) -> float:
        return ratio(self.true_positive_patients, self.patients_positive)

    @property
    def specificity(self) -> float:
        return ratio(self.true_negative_patients, self.patients_negative)


def evaluation_dict(ev: VolumeEvaluation) -> dict:
    """``ev``'s counts and the scores derived from them (NaN where undefined becomes None), for
    evaluation.json and the model cards."""
    def number(x: float) -> "float | None":
        return round(float(x), 4) if np.isfinite(x) else None

    d = asdict(ev)
    d.update(dice=number(ev.dice), precision=number(ev.precision), recall=number(ev.recall),
             clots=ev.clots, clots_found=ev.clots_found, sensitivity=number(ev.sensitivity),
             specificity=number(ev.specificity),
             sensitivity_text=wilson(ev.true_positive_patients, ev.patients_positive),
             specificity_text=wilson(ev.true_negative_patients, ev.patients_negative))
    return d


def evaluation_from_dict(d: dict) -> VolumeEvaluation:
    """The VolumeEvaluation of an ``evaluation_dict`` (its counts; the derived scores are recomputed)."""
    counts = {f.name: d[f.name] for f in fields(VolumeEvaluation) if f.name != "levels"}
    return VolumeEvaluation(**counts, levels={lv: LevelCounts(**c) for lv, c in d["levels"].items()})


def add_study(ev: VolumeEvaluation, prob: np.ndarray, study: Study) -> None:
    """Add one study's scores (``prob`` on its grid) to ``ev``; ``study``: a phantom Study or any
    object with its ``volume``, ``masks``, ``clot_ids`` and ``clot_levels`` (seg_manifest_data)."""
    if prob.shape != study.masks.shape or study.clot_ids is None:
        raise ValueError(f"probability {prob.shape} vs study {study.masks.shape}, or a study without clot ids")
    voxel_ml = float(np.prod([float(s) for s in study.volume.spacing])) / 1000.0
    labels, n = large_components(prob >= ev.threshold, ev.min_component_ml / voxel_ml)
    pred = labels > 0
    ref = study.clot_ids > 0
    ev.tp += int(np.count_nonzero(pred & ref))
    ev.fp += int(np.count_nonzero(pred & ~ref))
    ev.fn += int(np.count_nonzero(~pred & ref))
    for number, level in enumerate(study.clot_levels, start=1):
        clot = study.clot_ids == number
        counts = ev.levels.setdefault(level, LevelCounts())  # a manifest's clots are "unlabelled"
        hit = int(np.count_nonzero(pred & clot))
        counts.clots += 1
        counts.found += int(hit > 0)
        counts.voxels += int(np.count_nonzero(clot))
        counts.voxels_hit += hit
    touching = set(np.unique(labels[pred & ref]).tolist()) - {0}
    ev.fp_components += n - len(touching)
    positive, called = bool(ref.any()), n > 0
    if positive:
        ev.patients_positive += 1
        ev.true_positive_patients += int(called)
    else:
        ev.patients_negative += 1
        ev.true_negative_patients += int(not called)


def evaluate_volumes(probs: Sequence[np.ndarray], studies: Sequence[Study], threshold: float = 0.5,
                     min_component_ml: float = 0.0) -> VolumeEvaluation:
    ev = VolumeEvaluation(threshold, min_component_ml)
    for prob, study in zip(probs, studies, strict=True):
        add_study(ev, prob, study)
    return ev


def choose_operating_point(probs: Sequence[np.ndarray], studies: Sequence[Study], min_sensitivity: float = 0.95,
                           thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
                           min_mls: Sequence[float] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
                           what: str = "PE") -> VolumeEvaluation:
    """The (threshold, minimum component) with the highest patient specificity among those with
    patient sensitivity >= ``min_sensitivity`` (ties: more clots found); if none reaches it, the most
    sensitive one. Returns that point's validation evaluation. Validation needs studies with and
    without the lesion (``what``: PE, or another lesion class the studies' masks stand for): without
    either, sensitivity or specificity is undefined at every point (ValueError)."""
    positive = [bool((study.clot_ids > 0).any()) for study in studies]
    lesion, lesions = ("a clot", "clots") if what == "PE" else ("a lesion", "lesions")
    if not any(positive):
        raise ValueError(f"no {what} studies on validation ({len(positive)} studies, none with {lesion}): cannot "
                         "choose an operating point (patient sensitivity is undefined)")
    if all(positive):
        raise ValueError(f"no study without {what} on validation (all {len(positive)} have {lesions}): cannot "
                         "choose an operating point (patient specificity is undefined)")
    grid = [evaluate_volumes(probs, studies, t, m) for t in thresholds for m in min_mls]

    def key(ev: VolumeEvaluation) -> tuple:
        spec = ev.specificity if np.isfinite(ev.specificity) else 0.0
        return (spec, ev.clots_found, ev.dice if np.isfinite(ev.dice) else 0.0)

    good = [ev for ev in grid if ev.sensitivity >= min_sensitivity]
    if good:
        return max(good, key=key)
    return max(grid, key=lambda ev: (ev.sensitivity,) + key(ev))


def wilson(k: int, n: int) -> str:
    """``k/n`` as a percentage with its Wilson 95% interval."""
    if not n:
        return "n/a"
    low, high = wilson_interval(k, n)
    return f"{100 * k / n:.1f} ({100 * low:.0f}-{100 * high:.0f}; {k}/{n})"


def volume_table(rows: Sequence["tuple[str, VolumeEvaluation]"]) -> str:
    """The papers' table: Dice, precision, recall, clots found, FP components, patient sens / spec."""
    head = ["Model", "Dice (%)", "Precision (%)", "Recall (%)", "Clots found", "FP comps / patient",
            "Patient sens. (%, 95% CI)", "Patient spec. (%, 95% CI)", "Operating point"]
    body = []
    for label, ev in rows:
        patients = ev.patients_positive + ev.patients_negative
        body.append([label, pct(ev.dice), pct(ev.precision), pct(ev.recall), f"{ev.clots_found}/{ev.clots}",
                     f"{ev.fp_components / patients:.1f}" if patients else "n/a",
                     wilson(ev.true_positive_patients, ev.patients_positive),
                     wilson(ev.true_negative_patients, ev.patients_negative),
                     f"p >= {ev.threshold:g}, comps >= {ev.min_component_ml:g} mL"])
    return markdown_table(head, body)


def level_table(rows: Sequence["tuple[str, VolumeEvaluation]"]) -> str:
    """Clots found and voxel recall per clot level, one column pair per level."""
    levels = list(LEVELS) + sorted({lv for _, ev in rows for lv in ev.levels} - set(LEVELS))
    head = ["Model"] + [f"{lv}: found / recall (%)" for lv in levels]
    body = []
    for label, ev in rows:
        cells = []
        for lv in levels:
            c = ev.levels.get(lv, LevelCounts())
            cells.append(f"{c.found}/{c.clots} / {pct(ratio(c.voxels_hit, c.voxels))}" if c.clots else "none")
        body.append([label] + cells)
    return markdown_table(head, body)


def results_text(rows: Sequence["tuple[str, VolumeEvaluation]"]) -> str:
    """The volume table and the per-level table as one Markdown text (tables.md, seg_report.md, printed)."""
    return f"{volume_table(rows)}\n\nClots found and voxel recall per level\n\n{level_table(rows)}\n"
