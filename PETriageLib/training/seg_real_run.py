"""Segmentation experiment on real-anatomy phantoms: train on patches of training cases, choose each
model's operating point on validation cases, score whole held-back studies.

Every study is a real CAD-PE case (``scripts/real_anatomy_split.json`` says which are held back)
rendered in both phases. Cross-phase models (CPMN) train on the CTPA/NCT pairs and are scored on
the NCT studies, their inference path; segmentation models train on CTPA and are scored on CTPA and,
to show what they lose without contrast, on NCT. A run whose checkpoint already exists in ``out_dir``
is loaded instead of trained again (its operating point chosen again on validation, and the checkpoint
updated when that changes), so an interrupted experiment resumes where it stopped. The scores
go to ``out_dir``/evaluation.json (read by ``petriage ship-seg`` for the model cards) and tables.md.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from PETriageLib.models.registry import model_task
from PETriageLib.models.seg_base import SegmentationNet
from PETriageLib.vocabulary import LESION_TITLES
from PETriageLib.models.seg_checkpoint import class_point, load_seg_checkpoint, save_seg_checkpoint
from PETriageLib.models.seg_predict import predict_embolus_probability
from PETriageLib.training.seg_real_data import RealSegSpec, RealSegStudy, patch_slices, real_seg_studies
from PETriageLib.atomic import atomic_write
from PETriageLib.training.seg_volume_eval import (VolumeEvaluation, choose_operating_point, evaluate_volumes,
                                                  evaluation_dict, evaluation_from_dict, results_text)
from PETriageLib.training.segmentation import SegTrainConfig, train_cross_phase, train_segmentation

log = logging.getLogger(__name__)

Item = tuple[str, int, bool]  # (case id, seed, has PE)


@dataclass
class RealSegPlan:
    cases_dir: Path
    train: Sequence[Item]
    validation: Sequence[Item]
    test: Sequence[Item]
    spec: RealSegSpec = RealSegSpec()
    patch: int = 64
    min_sensitivity: float = 0.95


@dataclass
class RealSegRun:
    label: str
    config: SegTrainConfig
    checkpoint: Path
    validation: VolumeEvaluation
    test: dict[str, VolumeEvaluation] = field(default_factory=dict)  # phase -> scores


def run_label(config: SegTrainConfig) -> str:
    return f"{config.model} ({config.ablation})" if model_task(config.model) == "cross_phase" else config.model


def run_file_name(label: str) -> str:
    return label.replace(" (", "_").replace(")", "").replace(" ", "_").lower() + ".pt"


def _probabilities(model: SegmentationNet, studies: Sequence[RealSegStudy], phase: str) -> list[np.ndarray]:
    return [predict_embolus_probability(model, getattr(s, phase).volume) for s in studies]


def run_real_segmentation(plan: RealSegPlan, configs: Sequence[SegTrainConfig], out_dir: "str | Path",
                          progress: "Callable[[str], None] | None" = None) -> list[RealSegRun]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = progress or (lambda text: log.info("%s", text))
    note(f"rendering {len(plan.train)} training studies (both phases)")
    train = patch_slices(real_seg_studies(plan.cases_dir, plan.train, plan.spec), patch=plan.patch)
    note(f"{len(train)} training patches; rendering {len(plan.validation)} validation and {len(plan.test)} test studies")
    val = real_seg_studies(plan.cases_dir, plan.validation, plan.spec)
    test = real_seg_studies(plan.cases_dir, plan.test, plan.spec)
    runs = []
    for config in configs:
        label = run_label(config)
        cross = model_task(config.model) == "cross_phase"
        path = out / run_file_name(label)
        phase = "nct" if cross else "ctpa"
        if path.is_file():
            note(f"{label}: loading {path} (already trained)")
            model, meta = load_seg_checkpoint(path)
        else:
            note(f"{label}: training {config.steps} steps")
            model = (train_cross_phase if cross else train_segmentation)(train, config).model
            meta = None
        point = choose_operating_point(_probabilities(model, val, phase), [getattr(s, phase) for s in val],
                                       plan.min_sensitivity)
        training = None if meta else {
            "steps": config.steps, "lr": config.lr, "width": config.width, "batch_size": config.batch_size,
            "ablation": config.ablation if cross else None, "ifd_margin": config.ifd_margin,
            "ifd_weight": config.ifd_weight, "ifa_weight": config.ifa_weight,
            "train_cases": sorted({c for c, _, _ in plan.train}), "patches": len(train),
            "data": f"real-anatomy phantoms, {plan.patch} px patches at {plan.spec.pixel_mm} mm"}
        store_operating_point(path, model, meta, point, plan.patch, plan.spec.pixel_mm, training,
                              lambda text: note(f"{label}: {text}"))
        run = RealSegRun(label, config, path, point)
        for name in ("nct",) if cross else ("ctpa", "nct"):
            run.test[name] = evaluate_volumes(_probabilities(model, test, name), [getattr(s, name) for s in test],
                                              point.threshold, point.min_component_ml)
        note(f"{label}: test " + ", ".join(f"{k} Dice {v.dice:.3f}" for k, v in run.test.items()))
        runs.append(run)
        write_results(runs, _plan_spec(plan), _plan_split(plan), out)  # after every run: an interrupted
        # experiment keeps its scores
    return runs


def store_operating_point(path: Path, model: SegmentationNet, meta: "dict | None", point: VolumeEvaluation,
                          input_size: int, pixel_mm: float, training: "dict | None",
                          note: Callable[[str], None],
                          class_points: "dict[str, tuple[float, float]] | None" = None) -> None:
    """Write the checkpoint with the validation-chosen operating point (``point``: of the model's
    first lesion class; ``class_points``: every class's, for a model with several). A new model is
    saved with the run's input size, pixel size and ``training`` record; a loaded one (``meta``) only
    when a point changed, keeping its own input size, pixel size and training record."""
    points = {model.classes[0]: (point.threshold, point.min_component_ml), **(class_points or {})}
    if meta is not None:
        old = {c: class_point(meta, c) for c in model.classes}
        if old == points:
            return
        note(f"operating point now p >= {point.threshold:g}, comps >= {point.min_component_ml:g} mL "
             f"(was {meta['threshold']:g}, {meta['min_component_ml']:g})"
             + (f", per class {points} (was {old})" if len(points) > 1 else "") + ": checkpoint updated")
        input_size, pixel_mm, training = meta["input_size"], meta["pixel_mm"], meta["training"]
    save_seg_checkpoint(path, model, input_size=input_size, threshold=point.threshold, training=training,
                        pixel_mm=pixel_mm, min_component_ml=point.min_component_ml, class_points=points)


def test_key(phase: str, lesion: str) -> str:
    """The key of one phase and lesion class in RealSegRun.test and evaluation.json: the phase alone
    for the embolus (as always), ``phase-class`` for another class."""
    return phase if lesion == "pe" else f"{phase}-{lesion}"


def row_label(label: str, key: str) -> str:
    """A table row's name for a run ``label`` and a ``test_key``."""
    phase, _, lesion = key.partition("-")
    return f"{label} on {phase.upper()}" + (f", {LESION_TITLES.get(lesion, lesion)}" if lesion else "")


def result_rows(runs: Sequence[RealSegRun]) -> list[tuple[str, VolumeEvaluation]]:
    return [(row_label(r.label, key), ev) for r in runs for key, ev in r.test.items()]


def _saved_rows(entries: Sequence[dict]) -> list[tuple[str, VolumeEvaluation]]:
    """result_rows of evaluation.json's run entries (earlier invocations' runs have no RealSegRun)."""
    return [(row_label(e["label"], key), evaluation_from_dict(ev)) for e in entries for key, ev in e["test"].items()]


def _plan_spec(plan: RealSegPlan) -> dict:
    return {"pixel_mm": plan.spec.pixel_mm, "slice_thickness": plan.spec.slice_thickness, "patch": plan.patch,
            "min_sensitivity": plan.min_sensitivity}


def _plan_split(plan: RealSegPlan) -> dict:
    return {name: [list(item) for item in items]
            for name, items in (("train", plan.train), ("validation", plan.validation), ("test", plan.test))}


def write_results(runs: Sequence[RealSegRun], spec: dict, split: dict, out: Path) -> None:
    """evaluation.json (every run: checkpoint, validation operating point, test scores per phase;
    the data spec and the split, each split a list of [id, seed, has PE]) and tables.md (the volume
    and per-level tables). Runs of an earlier evaluation.json with the same spec and split are kept
    (``runs`` replace those of their label), so that training one more --model into the folder keeps
    the others for ship-seg; with another spec or split the old file is replaced, with a warning."""
    path = out / "evaluation.json"
    # compared as JSON reads them back (tuples become lists)
    spec, split = json.loads(json.dumps(spec)), json.loads(json.dumps(split))
    entries = {}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if (old.get("spec"), old.get("split")) == (spec, split):
            entries = {e["label"]: e for e in old["runs"]}
        else:
            log.warning("%s was written for another data spec or split: its runs (%s) are dropped", path,
                        ", ".join(e["label"] for e in old.get("runs", [])))
    for r in runs:  # a label already there keeps its place
        entries[r.label] = {"label": r.label, "checkpoint": r.checkpoint.name,
                            "validation": evaluation_dict(r.validation),
                            "test": {phase: evaluation_dict(ev) for phase, ev in r.test.items()}}
    data = {"spec": spec, "split": split, "runs": list(entries.values())}
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    tables = results_text(_saved_rows(data["runs"]))
    atomic_write(out / "tables.md", lambda tmp: tmp.write_text(tables, encoding="utf-8"))
