"""Ship a trained embolus segmentation or non-contrast (CPMN) model: register one run of a
``petriage train-seg --anatomy real`` folder in Resources/models.json's ``segmentation_models``, with a
model card whose figures are that run's held-out scores (evaluation.json), beside the paper's."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PETriageLib.errors import CheckpointError
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
from PETriageLib.models.zoo import register_segmentation_model

REPRODUCE = "scripts/train_demo_seg_models.sh"
# the figures each architecture's paper reports (real patients), quoted beside ours on the card
PAPER_FIGURES = {
    "cpmn": "CPMN paper (Cross-Phase Mutual Learning, real non-contrast CT): patient sensitivity 95.4%, "
            "specificity 99.6%, embolus Dice 78.5%",
    "fusa_resunet": "FUSA paper (Full Scale Attention, real COVID-19 CT lesions): FUSA-ResUnet Dice 89.76%",
    "resunet": "FUSA paper's comparator ResUnet (real COVID-19 CT lesions)",
}


def _run(run_dir: Path, label: str) -> tuple[dict, dict]:
    path = run_dir / "evaluation.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: run petriage train-seg --anatomy real --out {run_dir} first")
    data = json.loads(path.read_text(encoding="utf-8"))
    for run in data["runs"]:
        if run["label"] == label:
            return data, run
    known = ", ".join(repr(r["label"]) for r in data["runs"])
    raise CheckpointError(f"{path} has no run {label!r} (it has {known})")


def _scores(ev: dict) -> dict[str, Any]:
    found = {lv: f"{c['found']}/{c['clots']}" for lv, c in ev["levels"].items() if c["clots"]}
    return {"dice": ev["dice"], "precision": ev["precision"], "recall": ev["recall"],
            "clots_found": f"{ev['clots_found']}/{ev['clots']}", "clots_found_per_level": found,
            "patient_sensitivity": ev["sensitivity_text"], "patient_specificity": ev["specificity_text"]}


def segmentation_card(data: dict, run: dict, meta: dict) -> dict[str, Any]:
    """The model card of one run: use, data, limits and its held-out figures beside the paper's."""
    training = meta.get("training", {})
    architecture = meta["architecture"]
    split = data["split"]
    spec = data["spec"]
    cross = meta["task"] == "cross_phase"
    n_test = len({case for case, _, _ in split["test"]})
    metrics = {f"held_out_{phase}": _scores(ev) for phase, ev in run["test"].items()}
    metrics.update(
        test_set=(f"{len(split['test'])} test {'patients (CTPA / NCT pairs)' if spec.get('pairs') else 'series'} "
                  f"of {spec['manifest']}" if spec.get("manifest") else
                  f"{len(split['test'])} studies from {n_test} held-back CAD-PE cases (each once with and once "
                  "without clots), real-anatomy phantoms"),
        operating_point=f"p >= {meta['threshold']:g}, components >= {meta['min_component_ml']:g} mL, chosen on "
                        f"{len(split['validation'])} validation studies for >= "
                        f"{100 * spec['min_sensitivity']:.0f}% patient sensitivity",
        paper=PAPER_FIGURES.get(architecture, "none quoted"))
    texts = _manifest_texts if spec.get("manifest") else _phantom_texts
    use, data_text, limits = texts(spec, split, training, cross)
    return {"intended_use": use, "training_data": data_text, "limits": limits, "metrics": metrics,
            "architecture": architecture, "threshold": meta["threshold"],
            "min_component_ml": meta["min_component_ml"], "pixel_mm": meta.get("pixel_mm")}


def _manifest_texts(spec: dict, split: dict, training: dict, cross: bool) -> tuple[str, str, str]:
    """(use, data, limits) of a petriage train-seg --manifest run: the user's own series."""
    unit = "patients (a CTPA and a non-contrast series each)" if spec.get("pairs") else "series"
    data_text = (f"The series of manifest {spec['manifest']}: {len(split['train'])} training {unit} "
                 f"({training.get('patches')} {spec['patch']} px patches at {spec['pixel_mm']} mm), "
                 f"{training.get('steps')} steps, lr {training.get('lr')}, width {training.get('width')}"
                 + (f", CPMN losses {training.get('ablation')}." if cross else "."))
    use = ("Research only, NOT for clinical use: finds pulmonary emboli on non-contrast chest CT (the NCT "
           "pathway of a cross-phase model)" if cross else "Research only, NOT for clinical use: segments "
           "pulmonary emboli")
    return (use, data_text, "Figures on the manifest's own test split only; check them on your data before any use.")


def _phantom_texts(spec: dict, split: dict, training: dict, cross: bool) -> tuple[str, str, str]:
    """(use, data, limits) of a petriage train-seg --anatomy real run on synthetic phantoms."""
    use = ("Research and demonstration only, NOT for clinical use: "
           + ("triages non-contrast chest CT for PE (its NCT pathway; a series is PE-suspected when a "
              "predicted embolus component remains) and segments the emboli"
              if cross else "segments pulmonary emboli on CTPA series (the clot mask and volume in the report)"))
    data_text = (f"Synthetic real-anatomy phantoms (petriage phantom --anatomy real): the artery, vein and lung "
                 f"masks of {len(training.get('train_cases', []))} CAD-PE cases with clots drawn from the FUMPE "
                 f"clot statistics, rendered {'as CTPA / non-contrast pairs' if cross else 'as CTPA and non-contrast'} "
                 f"at {spec['pixel_mm']} mm pixels and {spec['slice_thickness']} mm slices; "
                 f"{training.get('patches')} {spec['patch']} px patches; {training.get('steps')} steps, lr "
                 f"{training.get('lr')}, width {training.get('width')}"
                 + (f", ablation {training.get('ablation')}, IFD margin {training.get('ifd_margin')}" if cross else "")
                 + f". No real patient's CT voxels or clots. Reproduce: {REPRODUCE}.")
    limits = ("Trained for minutes on a CPU on synthetic data: the figures are on held-out synthetic phantoms, "
              "not on patients, and say nothing about real CT; the paper's figures are on real patients and "
              "are quoted only for comparison. Real CT differs from the phantoms (docs/phantom.md). "
              "Inference resamples slices to the training pixel size.")
    return use, data_text, limits


def _check_operating_point(run: dict, meta: dict, checkpoint: Path, label: str) -> None:
    """The card's figures hold at evaluation.json's operating point only: refuse a checkpoint that
    triage would run at another one (retrained or re-chosen after evaluation.json was written)."""
    recorded = (float(run["validation"]["threshold"]), float(run["validation"]["min_component_ml"]))
    stored = (float(meta["threshold"]), float(meta.get("min_component_ml") or 0.0))
    if not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(recorded, stored)):
        raise CheckpointError(
            f"{checkpoint} runs at p >= {stored[0]:g}, comps >= {stored[1]:g} mL, but evaluation.json scores run "
            f"{label!r} at p >= {recorded[0]:g}, comps >= {recorded[1]:g} mL: its figures are not this checkpoint's; "
            f"run petriage train-seg again with --out {checkpoint.parent} to score it")


def ship_segmentation(run_dir: "str | Path", label: str, name: str,
                      resources: "str | Path | None" = None) -> dict:
    """Register run ``label`` of ``run_dir`` as ``name``; returns the manifest entry."""
    run_dir = Path(run_dir)
    data, run = _run(run_dir, label)
    checkpoint = run_dir / run["checkpoint"]
    model, meta = load_seg_checkpoint(checkpoint)
    if "pe" not in model.classes:  # registered models are what triage's --seg-model runs: it finds clots
        raise CheckpointError(f"{checkpoint} segments {', '.join(model.classes)} only, not emboli: triage could not "
                              "use it, so it is not registered")
    _check_operating_point(run, meta, checkpoint, label)
    return register_segmentation_model(name, checkpoint, segmentation_card(data, run, meta), resources)
