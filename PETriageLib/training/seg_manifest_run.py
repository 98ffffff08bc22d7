"""Segmentation experiment on a training manifest (your own series with PE masks): train on
patches of the train split, choose the operating point on the val split, score whole test series
(training/seg_volume_eval.py), with evaluation.json and tables.md as the real-anatomy run writes
them (so ``petriage ship-seg`` can register the result). Cross-phase models (CPMN) need a manifest whose
patients have a CTPA and a non-contrast series on one grid (training/seg_manifest_pairs.py).
Resumable like the real-anatomy run: an existing checkpoint is loaded and its operating point
chosen again on validation."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.models.registry import model_task
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
from PETriageLib.vocabulary import LESION_CLASSES, LESION_TITLES
from PETriageLib.models.seg_predict import predict_lesion_probabilities
from PETriageLib.training.data import make_splits, patient_labels
from PETriageLib.training.splits import save_splits
from PETriageLib.training.manifest import ManifestError, Source, load_manifest
from PETriageLib.training.seg_manifest_data import MaskedSeries, manifest_patches, mask_classes, masked_series
from PETriageLib.training.seg_manifest_pairs import has_pairs, nct_series, paired_series, phase_pairs
from PETriageLib.training.seg_data import SegSlices
from PETriageLib.training.seg_real_run import (RealSegRun, run_file_name, run_label, store_operating_point, test_key,
                                               write_results)
from PETriageLib.training.seg_volume_eval import VolumeEvaluation, add_study, choose_operating_point
from PETriageLib.training.segmentation import SegTrainConfig, train_cross_phase, train_segmentation

log = logging.getLogger(__name__)


@dataclass
class ManifestSegPlan:
    manifest: Path
    splits_file: "Path | None" = None  # read, or written when new (training/data.make_splits)
    pixel_mm: float = 1.2
    patch: int = 64
    min_sensitivity: float = 0.95


def run_manifest_segmentation(plan: ManifestSegPlan, configs: Sequence[SegTrainConfig], out_dir: "str | Path",
                              progress: "Callable[[str], None] | None" = None) -> list[RealSegRun]:
    """Train, choose the operating point and score every config. A manifest whose patients have
    CTPA / non-contrast pairs (its contrast column) runs paired: segmentation models train on the
    CTPA series and are scored on both phases, cross-phase models (CPMN) train on the pairs and are
    scored on the NCT series; without pairs, every series trains and cross-phase models are refused."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = progress or (lambda text: log.info("%s", text))
    sources = load_manifest(plan.manifest)
    paired = has_pairs(sources)
    for config in configs:
        if model_task(config.model) != "segmentation" and not paired:
            raise ManifestError(f"{config.model} is a {model_task(config.model)} model: it needs paired "
                                "CTPA / non-contrast series of the same patients, which this manifest does not "
                                "give (a 'contrast' column, ctpa / none, with both phases per patient; "
                                "petriage phantom --anatomy real writes such manifests)")
    pairs = {p.ctpa.key: p for p in phase_pairs(sources)} if paired else {}
    if paired:
        sources = [p.ctpa for p in pairs.values()]
    else:  # segmentation models are CTPA models: series marked non-contrast are left out, as evaluate does
        kept = [s for s in sources if s.contrast != "none"]
        if len(kept) < len(sources):
            log.info("left out %d non-contrast series (contrast=none) of %d", len(sources) - len(kept), len(sources))
        sources = kept
    present = {s.key: mask_classes(s) for s in sources}
    pe = {key: "pe" in classes for key, classes in present.items()}
    trained = sorted({c for config in configs for c in config.classes}, key=LESION_CLASSES.index)
    parts = split_sources(sources, present, plan.splits_file or out / "splits.json", trained)
    for c in trained:
        check_validation_has(c, parts["val"], present)

    def series(part: str):
        return paired_series(pairs[s.key] for s in parts[part]) if paired else masked_series(parts[part])

    # training series stream through the patch sampler, test series through the scores one at a
    # time; the validation series stay in memory, as the operating-point grid needs them all
    patches: dict[tuple[str, ...], SegSlices] = {}  # per lesion-class set: the masks' channels differ

    def training_patches(classes: tuple[str, ...]) -> SegSlices:
        if classes not in patches:
            patches[classes] = manifest_patches(series("train"), patch=plan.patch, pixel_mm=plan.pixel_mm,
                                                classes=classes)
        return patches[classes]

    train = training_patches(tuple(configs[0].classes))
    val = list(series("val"))
    note(f"{len(train)} training patches from {len(parts['train'])} {'patients (CTPA / NCT pairs)' if paired else 'series'}; "
         f"{len(val)} validation and {len(parts['test'])} test {'patients' if paired else 'series'}")
    spec = {"manifest": str(plan.manifest), "pixel_mm": plan.pixel_mm, "slice_thickness": None,
            "patch": plan.patch, "min_sensitivity": plan.min_sensitivity}
    if paired:
        spec["pairs"] = True
    split = {key: [[s.patient_id, None, pe[s.key]] for s in parts[name]]
             for key, name in (("train", "train"), ("validation", "val"), ("test", "test"))}
    runs = []
    for config in configs:
        cross = model_task(config.model) == "cross_phase"
        label = run_label(config)
        path = out / run_file_name(label)
        if path.is_file():
            note(f"{label}: loading {path} (already trained)")
            model, meta = load_seg_checkpoint(path)
            if model.classes != tuple(config.classes):
                raise ManifestError(f"{path} segments {', '.join(model.classes)}, but this run asks for "
                                    f"{', '.join(config.classes)}: use another --out, or remove the file to train anew")
        else:
            note(f"{label}: training {config.steps} steps")
            train = training_patches(tuple(config.classes))
            model, meta = (train_cross_phase if cross else train_segmentation)(train, config).model, None
        pixel_mm = meta["pixel_mm"] if meta else plan.pixel_mm  # a loaded model runs at its own pixel size

        def probabilities(volume: CTVolume, model=model, pixel_mm=pixel_mm) -> dict[str, np.ndarray]:
            return predict_lesion_probabilities(model, volume, pixel_mm=pixel_mm)

        val_series = list(nct_series(val)) if cross else val
        val_probs = [probabilities(s.volume) for s in val_series]
        points = {c: choose_operating_point([p[c] for p in val_probs], [s.for_class(c) for s in val_series],
                                            plan.min_sensitivity, what="PE" if c == "pe" else LESION_TITLES[c])
                  for c in model.classes}
        point = points[model.classes[0]]
        del val_probs
        training = None if meta else {
            "steps": config.steps, "lr": config.lr, "width": config.width, "batch_size": config.batch_size,
            "ablation": config.ablation if cross else None, "train_cases": sorted({s.patient_id for s in parts["train"]}),
            "patches": len(train), "lesion_classes": list(model.classes),
            "data": f"manifest {plan.manifest}{', CTPA / non-contrast pairs' if paired else ''}, "
                    f"{plan.patch} px patches at {plan.pixel_mm} mm"}
        store_operating_point(path, model, meta, point, plan.patch, plan.pixel_mm, training,
                              lambda text: note(f"{label}: {text}"),
                              {c: (ev.threshold, ev.min_component_ml) for c, ev in points.items()})
        run = RealSegRun(label, config, path, point)
        phases = (("nct",) if cross else ("ctpa", "nct")) if paired else ("manifest",)
        run.test.update(score_classes(probabilities, series("test"), points, phases))
        note(f"{label}: test " + ", ".join(f"{k} Dice {v.dice:.3f}" for k, v in run.test.items()))
        runs.append(run)
        write_results(runs, spec, split, out)
    return runs


def split_sources(sources: Sequence[Source], present: "dict[str, frozenset[str]]", splits_file: Path,
                  classes: "Iterable[str]" = ("pe",)) -> dict[str, list[Source]]:
    """The train / val / test sources (training/data.make_splits). A new split is stratified so that
    validation and test get patients with and without each trained lesion class (``present``: the
    classes in each source's mask, by Source.key): by the combination of ``classes`` in a patient's
    masks when they go beyond PE and that leaves every split patients and validation both kinds of
    every class (small sets may not), else by patient_label or, without one, by its masks' PE."""
    classes = set(classes)
    if Path(splits_file).is_file() or all(s.split for s in sources):
        splits = make_splits(sources, splits_file)
    else:
        # "wnl" only stands for "no PE voxel" here: the label is read as the stratum
        labelled = [s if s.patient_label else replace(s, patient_label="pe" if "pe" in present[s.key] else "wnl")
                    for s in sources]
        candidates = [patient_labels(labelled)]
        if classes - {"pe"}:
            found: dict[str, set[str]] = {}
            for s in sources:
                found.setdefault(s.patient_id, set()).update(present[s.key] & classes)
            candidates.insert(0, {p: "+".join(sorted(c)) or "none" for p, c in found.items()})
        for strata in candidates:
            splits = make_splits(sources, strata=strata)
            val = [s for s in sources if s.patient_id in set(splits["val"])]
            if all(splits[n] for n in ("train", "val", "test")) and all(_has_both(c, val, present) for c in classes):
                break
        save_splits(splits, splits_file)
    parts = {}
    for name in ("train", "val", "test"):
        ids = set(splits.get(name, []))
        parts[name] = [s for s in sources if s.patient_id in ids]
        if not parts[name]:
            raise ManifestError(f"the {name} split of the manifest's series is empty (splits {sorted(splits)})")
    return parts


def _has_both(lesion: str, sources: Sequence[Source], present: "dict[str, frozenset[str]]") -> bool:
    """Whether ``sources`` hold series with and series without ``lesion`` in their masks."""
    return 0 < sum(lesion in present[s.key] for s in sources) < len(sources)


def check_validation_has(lesion: str, val: Sequence[Source], present: "dict[str, frozenset[str]]") -> None:
    """Refuse, before any training, a validation split on which ``lesion``'s operating point cannot
    be chosen: it needs series with and without that class."""
    if not _has_both(lesion, val, present):
        with_it = sum(lesion in present[s.key] for s in val)
        raise ManifestError(f"the validation split ({len(val)} series) has {'no' if with_it == 0 else 'only'} series "
                            f"with {LESION_TITLES[lesion]} in its mask: the operating point of that class needs "
                            "both; give the splits file more validation patients, with and without it")


def score_classes(probabilities: Callable[[CTVolume], "dict[str, np.ndarray]"], series: Iterable[MaskedSeries],
                  points: "dict[str, VolumeEvaluation]", phases: Sequence[str] = ("manifest",)
                  ) -> dict[str, VolumeEvaluation]:
    """Volume scores of every lesion class of ``points`` (each at its own threshold and minimum
    component) in every phase of ``phases``, keyed by ``test_key(phase, class)``: phase "nct" scores
    each series' non-contrast scan (``MaskedSeries.nct``, the same clots), any other the series'
    own. Each series is loaded once for all phases, the model run once per series and phase."""
    scores = {test_key(ph, c): VolumeEvaluation(ev.threshold, ev.min_component_ml)
              for ph in phases for c, ev in points.items()}
    for one in series:
        truth = {c: one.for_class(c) for c in points}
        for ph in phases:
            if ph == "nct" and one.nct is None:
                raise ValueError(f"patient {one.patient_id}: no non-contrast series")
            probs = probabilities(one.nct if ph == "nct" else one.volume)
            for c in points:
                add_study(scores[test_key(ph, c)], probs[c], truth[c])
    return scores


def evaluate_segmentation_model(spec: str, manifest: "str | Path | Sequence", splits: "dict[str, list[str]] | None",
                                split: str) -> tuple[dict[str, VolumeEvaluation], dict]:
    """``petriage evaluate --seg-model``: a registered or file segmentation model on one split of a
    manifest (all of it when ``splits`` is None), run as triage runs it (the checkpoint's input size,
    windows and pixel size), each of its lesion classes at the checkpoint's own operating point.
    Each model is scored on the phase it triages: a cross-phase model on the non-contrast series
    (of the CTPA / NCT pairs where the manifest has them, with the CTPA masks, as train-seg scores
    it, or else the series not marked ``contrast=ctpa``), a segmentation model on the series not
    marked ``contrast=none`` (as train-seg trains and scores it). Returns the scores per
    lesion class (in the model's order) and the checkpoint's metadata."""
    from PETriageLib.models.seg_checkpoint import class_point, load_seg_checkpoint
    from PETriageLib.models.zoo import resolve_segmentation_model

    path, expected = resolve_segmentation_model(str(spec))
    model, meta = load_seg_checkpoint(path, expected)
    cross = meta.get("task") == "cross_phase"
    sources = load_manifest(manifest)
    if splits is not None:
        if split not in splits:
            raise ManifestError(f"no split {split!r} (the splits file has {sorted(splits)})")
        ids = set(splits[split])
        sources = [s for s in sources if s.patient_id in ids]
    if not sources:
        raise ManifestError(f"the {split} split has no series of {manifest}")
    phase = "manifest"
    if cross and has_pairs(sources):
        series, phase = paired_series(phase_pairs(sources)), "nct"
    else:
        kept = [s for s in sources if s.contrast != ("ctpa" if cross else "none")]
        if not kept:
            raise ManifestError(f"the {split} split has no {'non-contrast' if cross else 'CTPA'} series for "
                                f"{spec} (a {meta.get('task')} model; the manifest's contrast column)")
        if len(kept) < len(sources):
            log.info("scoring %s on %d of the %d series (the %s ones)", spec, len(kept), len(sources),
                     "non-contrast" if cross else "contrast")
        series = masked_series(kept)
    points = {c: VolumeEvaluation(*class_point(meta, c)) for c in model.classes}

    def probabilities(volume: CTVolume) -> dict[str, np.ndarray]:
        return predict_lesion_probabilities(model, volume, meta.get("input_size"), meta.get("windows"),
                                            pixel_mm=meta.get("pixel_mm"))

    scores = score_classes(probabilities, series, points, (phase,))
    return {c: scores[test_key(phase, c)] for c in model.classes}, meta
