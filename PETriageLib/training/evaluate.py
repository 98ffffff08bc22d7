"""Evaluate a stage 1 + stage 2 pair on one split: slice tables, patient tables, ROC curves.

Slices: stage 1 on every slice with lung (wnl vs disease), stage 2 on the slices that are
truly diseased (other vs pe), as the paper reports them. Patients: a patient is diseased
when at least ``min_slices`` slices pass stage 1, and flagged for PE when at least
``min_slices`` slices pass both stages (the cascade as it runs on a new scan).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from PETriageLib.models.patient_rules import rule_for_pair
from PETriageLib.preprocess.slices import PreprocessConfig
from PETriageLib.reporting.json_text import to_json
from PETriageLib.training.cache import CachedSource, stage_targets
from PETriageLib.training.data import cached_splits
from PETriageLib.training.manifest import load_manifest, manifest_paths
from PETriageLib.training.patient_rule import RuleScore, rule_table, score_rule, series_probabilities
from PETriageLib.training.metrics import auroc_ci, binary_report, fmt_count, operating_point, roc_points
from PETriageLib.training.tables import (
    auroc_text, confusion_table, markdown_table, operating_point_table, patient_table, slice_table)

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_images(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model.eval()
    out = [torch.sigmoid(model(torch.from_numpy(np.asarray(images[i:i + batch_size], np.float32)))).squeeze(1).numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


def stage_probs(checkpoint: "str | Path", manifest: "str | Path", cache_root: "str | Path",
                splits_file: "str | Path | None", split: str, seed: int = 0
                ) -> "tuple[dict, list[CachedSource], list[np.ndarray]]":
    """(meta, cached sources of the split, per-source probabilities for every slice)."""
    from PETriageLib.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    cached = cached_splits(manifest, PreprocessConfig.from_dict(meta).to_dict(), cache_root, splits_file, seed, wanted=[split])[split]
    return meta, cached, [predict_images(model, c.images) for c in cached]


def refined_probs(refiner: "str | Path", stages: Sequence, manifest, cache_root, splits_file, split: str,
                  cached: Sequence[CachedSource], seed: int = 0
                  ) -> "tuple[list[np.ndarray], list[np.ndarray], float, float]":
    """Per source: the slice refiner's p(disease) and p(PE) on its slices with lung (0 elsewhere),
    and the refiner's two thresholds. ``stages``: the pair as ``triage.stages.load_stage`` gives it."""
    from PETriageLib.training.series_models.from_manifest import split_series
    from PETriageLib.models.series_checkpoint import load_slice_refiner
    from PETriageLib.training.series_models.refiner import refine_series

    model, meta = load_slice_refiner(refiner, [s.identities() for s in stages])
    series = iter(split_series(stages, manifest, cache_root, splits_file, split, meta["features"],
                               Path(cache_root) / "patient-features", seed))
    p1, p2 = [], []
    for c in cached:
        a, b = np.zeros(len(c.labels)), np.zeros(len(c.labels))
        lung = np.flatnonzero(c.has_lung)
        if len(lung):  # the series of sources without lung were left out
            s = next(series)
            if s.patient_id != c.patient_id or len(s.features) != len(lung):
                raise RuntimeError(f"refiner features of {s.patient_id} do not fit the cached slices of {c.patient_id}")
            q = refine_series(model, [s])[0]
            a[lung], b[lung] = q[:, 0], q[:, 1]
        p1.append(a)
        p2.append(b)
    return p1, p2, float(meta["threshold_disease"]), float(meta["threshold_pe"])


def stage_report(cached: Sequence[CachedSource], probs: Sequence[np.ndarray], stage: int, threshold: float,
                 class_names: Sequence[str], n_boot: int = 1000) -> "tuple[dict, np.ndarray, np.ndarray]":
    ys, ps = [], []
    for c, p in zip(cached, probs):
        idx, y = stage_targets(c.labels, c.has_lung, stage)
        ys.append(y)
        ps.append(p[idx])
    y, p = np.concatenate(ys), np.concatenate(ps)
    return binary_report(y, p, threshold, class_names, n_boot=n_boot), y, p


def patient_results(cached: Sequence[CachedSource], p1: Sequence[np.ndarray], p2: Sequence[np.ndarray],
                    t1: float, t2: float, min_slices: int = 1) -> list[dict]:
    rows = []
    for c, a, b in zip(cached, p1, p2):
        disease = c.has_lung & (a >= t1)
        pe = disease & (b >= t2)
        rows.append({"patient_id": c.patient_id, "label": c.patient_label,
                     "disease_slices": int(disease.sum()), "pe_slices": int(pe.sum()),
                     "predicted_disease": bool(disease.sum() >= min_slices),
                     "predicted_pe": bool(pe.sum() >= min_slices),
                     "max_pe_prob": float((a * b * c.has_lung).max()) if len(a) else 0.0})
    return rows


def patient_tables(rows: Sequence[dict]) -> dict:
    """Table 4 (stage 1: wnl vs diseased patients) and Table 6 (PE vs non-PE patients) counts."""
    def count(sel, ok):
        chosen = [r for r in rows if sel(r)]
        return fmt_count(sum(ok(r) for r in chosen), len(chosen))
    return {
        "stage1": [("WNL", count(lambda r: r["label"] == "wnl", lambda r: not r["predicted_disease"])),
                   ("Diseased (other or PE)", count(lambda r: r["label"] != "wnl", lambda r: r["predicted_disease"]))],
        "pe": [("PE (sensitivity)", count(lambda r: r["label"] == "pe", lambda r: r["predicted_pe"])),
               ("Non-PE (specificity)", count(lambda r: r["label"] != "pe", lambda r: not r["predicted_pe"])),
               ("  of which other disease", count(lambda r: r["label"] == "other", lambda r: not r["predicted_pe"])),
               ("  of which WNL", count(lambda r: r["label"] == "wnl", lambda r: not r["predicted_pe"]))],
    }


def phantom_pe_levels(manifest: "str | Path | Sequence[str | Path]") -> dict[str, str]:
    """patient_id -> most central clot level, for phantom studies (``study.json`` beside the series)."""
    from PETriageLib.phantom.findings import PE_LEVELS

    levels = {}
    for source in load_manifest(manifest):
        study = Path(source.paths[0]).parent / "study.json" if source.paths else None
        if study is None or not study.is_file():
            continue
        found = [f.get("level") for f in json.loads(study.read_text()).get("findings", []) if f.get("kind") == "pe"]
        found = [lv for lv in found if lv in PE_LEVELS]
        if found:
            levels[source.patient_id] = min(found, key=PE_LEVELS.index)  # PE_LEVELS runs central -> peripheral
    return levels


def pe_by_level(rows: Sequence[dict], levels: dict[str, str]) -> list[tuple[str, str]]:
    """Patient-level PE sensitivity per most central clot level (rows of a patient table)."""
    from PETriageLib.phantom.findings import PE_LEVELS

    out = []
    for level in PE_LEVELS:
        chosen = [r for r in rows if r["label"] == "pe" and levels.get(r["patient_id"]) == level]
        if chosen:
            out.append((level, fmt_count(sum(r["predicted_pe"] for r in chosen), len(chosen))))
    return out


def lesion_area_tables(cached: Sequence[CachedSource], p1: Sequence[np.ndarray], p2: Sequence[np.ndarray],
                       t1: float, t2: float) -> "dict | None":
    """Sensitivity by lesion area, and which findings each stage separates worst; None without masks.

    stage1: diseased slices passed by area; stage1_by_finding: the same split into PE-only slices
    and slices with other disease, each with its AUROC against the WNL slices; stage2_pe: PE
    slices passed by clot area; stage2_other: other-disease slices kept out of PE, with the AUROC
    of telling them from the PE slices.
    """
    from PETriageLib.training.lesion_size import (
        separation_by_area, sensitivity_by_area, slice_lesion_areas)

    if not cached or any(c.source is None or c.source.mask is None for c in cached):
        return None
    area = np.concatenate([slice_lesion_areas(c.source) for c in cached])  # (slices, [pe, other]) mm^2
    lung = np.concatenate([c.has_lung for c in cached]).astype(bool)
    labels = np.concatenate([np.asarray(c.labels) for c in cached])
    q1, q2 = np.concatenate(p1), np.concatenate(p2)
    wnl, pe, other = (lung & (labels == name) for name in ("wnl", "pe", "other"))
    diseased = pe | other
    pe_only, with_other = diseased & (area[:, 1] == 0), diseased & (area[:, 1] > 0)
    by_finding = (separation_by_area("PE only (clot area)", area[pe_only, 0], q1[pe_only] >= t1, q1[pe_only], q1[wnl])
                  + separation_by_area("other disease, with or without PE", area[with_other].sum(axis=1),
                                       q1[with_other] >= t1, q1[with_other], q1[wnl]))
    # Stage 2 errs on other disease by calling it PE: score "otherness" (1 - p) against the PE slices.
    stage2_other = separation_by_area("other disease", area[other, 1], q2[other] < t2, 1 - q2[other], 1 - q2[pe])
    return {"stage1": sensitivity_by_area(area[diseased].sum(axis=1), q1[diseased] >= t1),
            "stage1_by_finding": by_finding,
            "stage2_pe": sensitivity_by_area(area[pe, 0], q2[pe] >= t2),
            "stage2_other": stage2_other}


def _separation_table(rows: Sequence[dict], head: Sequence[str]) -> str:
    return markdown_table(head, [(r["group"], r["area"], r["found"], "n/a" if r["auroc"] is None
                                  else f"{r['auroc']:.3f}") for r in rows])


def _patient_classifier_md(r: dict) -> list[str]:
    rows = [("PE (sensitivity)", r["sensitivity"]), ("Non-PE (specificity)", r["specificity"]),
            ("  of which other disease", r["specificity_other"]), ("  of which WNL", r["specificity_wnl"])]
    return [f"## PE per patient, patient classifier ({r['head']} over {r['features']}, p >= {r['threshold']:.4f})",
            "", patient_table(rows), "",
            f"Patient classifier `{r['classifier']}`: AUROC (95% CI) {auroc_text(r['auroc'])}; its threshold "
            "was chosen on the validation patients.", ""]


def registered_rule_score(stages: Sequence, cached: Sequence[CachedSource], p1: Sequence[np.ndarray],
                          p2: Sequence[np.ndarray]) -> "RuleScore | None":
    """The pair's registered patient rule (``petriage patient-rule --register``) on these series;
    None when it has none. ``stages``: the pair as ``triage.stages.load_stage`` gives it."""
    rule = rule_for_pair(stages[0].identities(), stages[1].identities())
    return None if rule is None else score_rule(series_probabilities(cached, p1, p2), rule)


def write_slice_csv(cached: Sequence[CachedSource], p1: Sequence[np.ndarray], p2: Sequence[np.ndarray],
                    t1: float, t2: float, path: Path) -> None:
    """One row per slice: its label and both stages' probabilities, for error analysis and for
    choosing a patient rule (``training.patient_rule.read_slice_csv``; ``series`` numbers the
    evaluated series, as one patient may have several)."""
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["patient_id", "slice_index", "label", "has_lung", "p_stage1", "p_stage2", "passes_stage1",
                    "passes_both", "series", "patient_label"])
        for n, (c, a, b) in enumerate(zip(cached, p1, p2)):
            for k, label in enumerate(c.labels):
                passes1 = bool(c.has_lung[k] and a[k] >= t1)
                w.writerow([c.patient_id, k, label, int(c.has_lung[k]), f"{a[k]:.6f}", f"{b[k]:.6f}", int(passes1),
                            int(passes1 and b[k] >= t2), n, c.patient_label])


def save_roc(curves: Sequence["tuple[str, np.ndarray, np.ndarray]"], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    drawn = 0
    for label, y, p in curves:
        if len(np.unique(y)) == 2:  # a ROC curve needs both classes
            fpr, tpr = roc_points(y, p)
            ax.plot(fpr, tpr, label=label)
            drawn += 1
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    if drawn:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "only one class present", ha="center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def domain_summary(stage: Any, cached: Sequence[CachedSource], patients: list[dict]) -> dict | None:
    """How many of the evaluated series triage's domain check would refuse (``stage``: stage 1 as
    ``triage.stages.load_stage`` gives it); each patient row gets its ``domain_score``. None when the
    checkpoint has no statistics."""
    from PETriageLib.training.domain_fit import score_sources

    if stage.domain is None:
        return None
    scores = score_sources(stage.model, stage.domain, cached)
    for row, c, score in zip(patients, cached, scores):
        if row["patient_id"] != c.patient_id:
            raise RuntimeError("patient rows and cached sources are out of step")
        row["domain_score"] = None if score is None else round(score, 2)
    known = [x for x in scores if x is not None]
    return {"threshold": stage.domain.threshold, "series": len(known),
            "refused": sum(x > stage.domain.threshold for x in known),
            "min": min(known, default=None), "median": float(np.median(known)) if known else None,
            "max": max(known, default=None)}


def _domain_md(summary: dict | None) -> str:
    if summary is None:
        return "Domain check: stage 1's checkpoint has no feature statistics (`petriage fit-domain`)."
    if summary["series"] == 0:
        return "Domain check: no evaluated series has a slice with lung to score."
    return (f"Domain check (stage 1's feature statistics, threshold {summary['threshold']:.0f}): triage would refuse "
            f"{summary['refused']} of {summary['series']} series as unlike its training data "
            f"(scores {summary['min']:.0f}-{summary['max']:.0f}, median {summary['median']:.0f}; "
            "per patient in report.json).")


def evaluate_cascade(stage1: "str | Path", stage2: "str | Path", manifest: "str | Path", out_dir: "str | Path",
                     cache_root: "str | Path", splits_file: "str | Path | None" = None, split: str = "test",
                     min_slices: int = 1, n_boot: int = 1000, label: Optional[str] = None, seed: int = 0,
                     patient_model: "str | Path | None" = None, refiner: "str | Path | None" = None) -> dict:
    """Write report.json, report.md, slices.csv and the ROC curves (roc_stage1.png, roc_stage2.png,
    roc_patients.png) into out_dir; return the report.

    With lesion masks in the manifest (phantoms), the report adds sensitivity by lesion area; with
    ``patient_model`` (``petriage train-patient``), that classifier's patient table; with
    ``refiner`` (``petriage train-refiner``), every table scores the refined slice probabilities
    at the refiner's thresholds: the cascade as it runs with that refiner.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m1, cached1, p1 = stage_probs(stage1, manifest, cache_root, splits_file, split, seed)
    m2, cached2, p2 = stage_probs(stage2, manifest, cache_root, splits_file, split, seed)
    if [c.patient_id for c in cached1] != [c.patient_id for c in cached2]:
        raise RuntimeError("stage 1 and stage 2 saw different sources; the manifest changed during evaluation")
    t1, t2 = float(m1["threshold"]), float(m2["threshold"])
    from PETriageLib.triage.stages import load_stage

    # the pair with its SHA256 and stage 1's domain statistics (the series models are bound to the pair)
    stages = [load_stage(1, stage1), load_stage(2, stage2)]
    if refiner is not None:
        p1, p2, t1, t2 = refined_probs(refiner, stages, manifest, cache_root, splits_file, split, cached1, seed)
    r1, y1, q1 = stage_report(cached1, p1, 1, t1, m1["class_names"], n_boot)
    r2, y2, q2 = stage_report(cached2, p2, 2, t2, m2["class_names"], n_boot)
    patients = patient_results(cached1, p1, p2, t1, t2, min_slices)
    ptables = patient_tables(patients)
    by_level = pe_by_level(patients, phantom_pe_levels(manifest))
    if by_level:
        ptables["pe_by_level"] = by_level
    by_area = lesion_area_tables(cached1, p1, p2, t1, t2)
    # How well the cascade ranks patients, whatever the flag rule: each patient's highest p(PE) on a slice.
    y_pat = np.array([r["label"] == "pe" for r in patients], int)
    q_pat = np.array([r["max_pe_prob"] for r in patients])
    patient_auroc = auroc_ci(y_pat, q_pat, n_boot, seed)
    # The thresholds are set for sensitivity; accuracy at 0.5 shows what that choice costs.
    points = {"stage1": [operating_point(y1, q1, t, m1["class_names"]) for t in (t1, 0.5)],
              "stage2": [operating_point(y2, q2, t, m2["class_names"]) for t in (t2, 0.5)]}
    name = label or f"{m1['architecture']} ({'+'.join(w['name'] for w in m1['windows'])}, {m1.get('crop')} crop)"
    if refiner is not None:
        name += ", slice refiner"
    report = {"split": split, "manifest": manifest_paths(manifest),
              "stage1_checkpoint": str(stage1),
              "stage2_checkpoint": str(stage2), "refiner": None if refiner is None else str(refiner),
              # what a patient rule chosen on this evaluation is bound to (petriage patient-rule)
              "stage1_sha256": stages[0].sha256, "stage2_sha256": stages[1].sha256,
              "thresholds": {"stage1": t1, "stage2": t2},
              "min_slices": min_slices, "stage1": r1, "stage2": r2,
              "patients": patients, "patient_tables": ptables, "patient_pe_auroc": patient_auroc,
              "by_lesion_area": by_area,
              "operating_points": points}
    report["domain_check"] = domain_summary(stages[0], cached1, patients)
    rule_score = None if refiner is not None else registered_rule_score(stages, cached1, p1, p2)
    report["patient_rule"] = None if rule_score is None else rule_score.to_dict()
    if patient_model is not None:
        from PETriageLib.training.series_models.from_manifest import patient_classifier_report

        report["patient_classifier"] = patient_classifier_report(patient_model, stages, manifest, cache_root,
                                                                 splits_file, split, n_boot, seed)
    (out / "report.json").write_text(to_json(report, indent=1))
    md = [f"# Evaluation on split `{split}` ({len(patients)} patients)", "",
          "## Stage 1 per slice (WNL vs disease, slices with lung)", "", slice_table([(name, r1)], m1["class_names"]),
          "", confusion_table(r1["confusion_matrix"]["rows_true_cols_pred"], m1["class_names"]), "",
          "## Stage 2 per slice (other vs PE, diseased slices)", "",
          slice_table([(name.replace(m1["architecture"], m2["architecture"]), r2)], m2["class_names"]), "",
          confusion_table(r2["confusion_matrix"]["rows_true_cols_pred"], m2["class_names"]), "",
          "## Per slice at other thresholds (the first row is the checkpoint's, as above)", "",
          operating_point_table(points, (m1["class_names"], m2["class_names"])), "",
          f"## Stage 1 per patient (diseased when >= {min_slices} slice(s) pass stage 1)", "",
          patient_table(ptables["stage1"]), "",
          f"## PE per patient (flagged when >= {min_slices} slice(s) pass both stages)", "",
          patient_table(ptables["pe"]), "",
          f"Patient PE score (the highest p(disease) x p(PE) on a slice with lung), PE against non-PE "
          f"patients: AUROC (95% CI) {auroc_text(patient_auroc)}. The table above flags by the slice thresholds; "
          f"this shows how well the same scores rank the patients (`roc_patients.png`).", "",
          *(_patient_classifier_md(report["patient_classifier"]) if patient_model is not None else []),
          *(["## PE per patient at the pair's patient rule (what petriage triage runs without series models)", "",
             rule_table([(f"rule {rule_score.rule.name}", rule_score)]), ""] if rule_score is not None else []),
          *(["## PE patients found, by the most central clot (phantom ground truth)", "",
             patient_table(by_level, "Most central clot", "Flagged"), ""] if by_level else []),
          *(["## Slices found, by lesion area on the slice (lesion masks)", "",
             patient_table(by_area["stage1"], "Stage 1: lesion area", "Passed stage 1"), "",
             patient_table(by_area["stage2_pe"], "Stage 2: clot area (PE slices)", "Passed stage 2"), "",
             "## Which findings limit each stage (lesion masks)", "",
             "AUROC of the slices in each row against the WNL slices (stage 1) or the PE slices (stage 2): "
             "1.000 means some threshold passes the whole row without a single error on the other side.", "",
             _separation_table(by_area["stage1_by_finding"], ("Stage 1: diseased slices", "Lesion area",
                                                              "Passed stage 1", "AUROC against WNL slices")), "",
             _separation_table(by_area["stage2_other"], ("Stage 2: diseased slices", "Lesion area",
                                                         "Kept out of PE", "AUROC against PE slices")), ""]
            if by_area else []),
          _domain_md(report["domain_check"]), "",
          f"Thresholds: stage 1 {t1:.4f}, stage 2 {t2:.4f} (chosen on the validation split). "
          f"Calibration (ECE): stage 1 {r1['calibration']['ece']:.3f}, stage 2 {r2['calibration']['ece']:.3f}.", ""]
    (out / "report.md").write_text("\n".join(md))
    write_slice_csv(cached1, p1, p2, t1, t2, out / "slices.csv")
    save_roc([(name, y1, q1)], out / "roc_stage1.png", "Stage 1: WNL vs disease")
    save_roc([(name, y2, q2)], out / "roc_stage2.png", "Stage 2: other vs PE")
    save_roc([(name, y_pat, q_pat)], out / "roc_patients.png", "Patients: non-PE vs PE")
    log.info("evaluation written to %s", out)
    return report
