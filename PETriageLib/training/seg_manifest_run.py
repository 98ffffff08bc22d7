"""Segmentation experiment on a training manifest (your own series with PE masks): train on
patches of the train split, choose the operating point on the val split, score whole test series
(training/seg_volume_eval.py), with evaluation.json and tables.md as the real-anatomy run writes
them (so ``petriage ship-seg`` can register the result). Segmentation models only: a manifest holds
one phase per series, and CPMN needs paired phases. Resumable like the real-anatomy run: an
existing checkpoint is loaded and its operating point chosen again on validation."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.models.registry import model_task
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
from PETriageLib.models.seg_predict import predict_embolus_probability
from PETriageLib.training.data import make_splits
from PETriageLib.training.manifest import ManifestError, Source, load_manifest
from PETriageLib.training.seg_manifest_data import manifest_patches, masked_series, source_has_pe
from PETriageLib.training.seg_real_run import RealSegRun, run_file_name, store_operating_point, write_results
from PETriageLib.training.seg_volume_eval import VolumeEvaluation, add_study, choose_operating_point
from PETriageLib.training.segmentation import SegTrainConfig, train_segmentation

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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = progress or (lambda text: log.info("%s", text))
    for config in configs:
        if model_task(config.model) != "segmentation":
            raise ManifestError(f"{config.model} is a {model_task(config.model)} model: it needs paired "
                                "CTPA / non-contrast series, which a manifest does not give (use --anatomy real)")
    sources = load_manifest(plan.manifest)
    pe = {s.key: source_has_pe(s) for s in sources}
    parts = split_sources(sources, pe, plan.splits_file or out / "splits.json")
    # training series stream through the patch sampler, test series through the scores one at a
    # time; the validation series stay in memory, as the operating-point grid needs them all
    train = manifest_patches(masked_series(parts["train"]), patch=plan.patch, pixel_mm=plan.pixel_mm)
    val = list(masked_series(parts["val"]))
    note(f"{len(train)} training patches from {len(parts['train'])} series; "
         f"{len(val)} validation and {len(parts['test'])} test series")
    spec = {"manifest": str(plan.manifest), "pixel_mm": plan.pixel_mm, "slice_thickness": None,
            "patch": plan.patch, "min_sensitivity": plan.min_sensitivity}
    split = {key: [[s.patient_id, None, pe[s.key]] for s in parts[name]]
             for key, name in (("train", "train"), ("validation", "val"), ("test", "test"))}
    runs = []
    for config in configs:
        path = out / run_file_name(config.model)
        if path.is_file():
            note(f"{config.model}: loading {path} (already trained)")
            model, meta = load_seg_checkpoint(path)
        else:
            note(f"{config.model}: training {config.steps} steps")
            model, meta = train_segmentation(train, config).model, None
        pixel_mm = meta["pixel_mm"] if meta else plan.pixel_mm  # a loaded model runs at its own pixel size

        def probability(volume: CTVolume, model=model, pixel_mm=pixel_mm) -> np.ndarray:
            return predict_embolus_probability(model, volume, pixel_mm=pixel_mm)

        point = choose_operating_point([probability(s.volume) for s in val], val, plan.min_sensitivity)
        training = None if meta else {
            "steps": config.steps, "lr": config.lr, "width": config.width, "batch_size": config.batch_size,
            "train_cases": sorted({s.patient_id for s in parts["train"]}), "patches": len(train),
            "data": f"manifest {plan.manifest}, {plan.patch} px patches at {plan.pixel_mm} mm"}
        store_operating_point(path, model, meta, point, plan.patch, plan.pixel_mm, training,
                              lambda text: note(f"{config.model}: {text}"))
        test = score_series(probability, parts["test"], point.threshold, point.min_component_ml)
        runs.append(RealSegRun(config.model, config, path, point, {"manifest": test}))
        note(f"{config.model}: test Dice {test.dice:.3f}")
        write_results(runs, spec, split, out)
    return runs


def split_sources(sources: Sequence[Source], pe: "dict[str, bool]", splits_file: Path) -> dict[str, list[Source]]:
    """The train / val / test sources (training/data.make_splits). A new split is stratified by
    patient_label or, for a source without one, by its mask's PE (``pe``, by Source.key), so that
    validation and test get patients with and without PE."""
    # "wnl" only stands for "no PE voxel" here: make_splits reads the label as the stratum
    labelled = [s if s.patient_label else replace(s, patient_label="pe" if pe[s.key] else "wnl") for s in sources]
    splits = make_splits(labelled, splits_file)
    parts = {}
    for name in ("train", "val", "test"):
        ids = set(splits.get(name, []))
        parts[name] = [s for s in sources if s.patient_id in ids]
        if not parts[name]:
            raise ManifestError(f"the {name} split of the manifest's series is empty (splits {sorted(splits)})")
    return parts


def score_series(probability: Callable[[CTVolume], np.ndarray], sources: Sequence[Source], threshold: float,
                 min_component_ml: float) -> VolumeEvaluation:
    """Volume scores of a model's ``probability`` map on the sources' series and masks, one series in
    memory at a time."""
    ev = VolumeEvaluation(threshold, min_component_ml)
    for series in masked_series(sources):
        add_study(ev, probability(series.volume), series)
    return ev


def evaluate_segmentation_model(spec: str, manifest: "str | Path | Sequence", splits: "dict[str, list[str]] | None",
                                split: str) -> tuple[VolumeEvaluation, dict]:
    """``petriage evaluate --seg-model``: a registered or file segmentation model on one split of a
    manifest (all of it when ``splits`` is None), run as triage runs it (triage.embolus.EmbolusModel:
    the checkpoint's input size, windows and pixel size) at the checkpoint's own operating point."""
    from PETriageLib.triage.embolus import load_embolus_model

    embolus = load_embolus_model(spec, "ctpa")  # this pathway takes either task; it only names the result
    sources = load_manifest(manifest)
    if splits is not None:
        if split not in splits:
            raise ManifestError(f"no split {split!r} (the splits file has {sorted(splits)})")
        ids = set(splits[split])
        sources = [s for s in sources if s.patient_id in ids]
    if not sources:
        raise ManifestError(f"the {split} split has no series of {manifest}")
    ev = score_series(lambda volume: embolus.segment(volume).probability, sources, embolus.threshold,
                      embolus.min_component_ml)
    return ev, embolus.meta
