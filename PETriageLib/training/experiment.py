"""The paper's comparison on synthetic data: backbones x crop, and window sets, for both stages.

Backbones (ResNet-50, DRN, EfficientNet-B5, CBAMDRN) are compared with a fixed central crop
and the dynamic lung crop, all with the dual window (DWL: vascular + lung); window sets
(single lung, single vascular, DWL, multi-window MWL: + mediastinal) on CBAMDRN with the
dynamic crop. Every variant trains on the same patient split and is scored on the test split
at its own validation threshold. Finished variants are kept, so an interrupted run continues.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from PETriageLib.training.config import TrainConfig
from PETriageLib.vocabulary import STAGE_CLASSES
from PETriageLib.training.evaluate import stage_probs, stage_report
from PETriageLib.training.pipeline import train_from_manifest
from PETriageLib.training.tables import slice_table

log = logging.getLogger(__name__)
DWL, MWL = ["vascular", "lung"], ["vascular", "lung", "mediastinal"]


@dataclass(frozen=True)
class Size:
    patients: int
    matrix: int
    slices: int
    input_size: int
    width: float
    epochs: int
    steps_per_epoch: int
    batch_size: int
    n_boot: int


SIZES = {
    "tiny": Size(patients=10, matrix=96, slices=16, input_size=64, width=0.125, epochs=1, steps_per_epoch=2,
                 batch_size=4, n_boot=50),
    "small": Size(patients=40, matrix=256, slices=40, input_size=128, width=0.25, epochs=3, steps_per_epoch=40,
                  batch_size=16, n_boot=500),
    "full": Size(patients=150, matrix=256, slices=60, input_size=160, width=0.5, epochs=10, steps_per_epoch=150,
                 batch_size=16, n_boot=1000),
}


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    table: str  # "backbone" or "windows"
    architecture: str
    windows: tuple = tuple(DWL)
    crop: str = "dynamic"
    drn_family: bool = field(default=True)


def variants() -> list[Variant]:
    out = []
    for arch, name, drn in (("resnet50", "ResNet-50", False), ("drn_d22", "DRN-D-22", True),
                            ("efficientnet_b5", "EfficientNet-B5", False), ("cbamdrn_d22", "CBAMDRN-D-22", True)):
        for crop in ("fixed", "dynamic"):
            out.append(Variant(f"{arch}-{crop}", f"{name}, {crop} crop (DWL)", "backbone", arch, tuple(DWL), crop, drn))
    for wins, name in ((("lung",), "lung window"), (("vascular",), "vascular window"), (tuple(MWL), "MWL")):
        out.append(Variant(f"cbamdrn_d22-{'+'.join(wins)}", f"CBAMDRN-D-22, {name}", "windows", "cbamdrn_d22", wins))
    return out


def variant_config(v: Variant, stage: int, size: Size, seed: int) -> TrainConfig:
    return TrainConfig(stage=stage, architecture=v.architecture,
                       model_config={"width": size.width} if v.drn_family else {}, windows=list(v.windows),
                       input_size=size.input_size, crop=v.crop, epochs=size.epochs,
                       steps_per_epoch=size.steps_per_epoch, batch_size=size.batch_size, seed=seed,
                       threads=None, progress=False, patience=size.epochs)


def _dataset(out: Path, size: Size, seed: int) -> Path:
    manifest = out / "data" / "manifest.csv"
    if not manifest.is_file():
        from PETriageLib.phantom.dataset import generate_dataset

        log.info("generating %d phantom patients (%d px, %d slices)", size.patients, size.matrix, size.slices)
        generate_dataset(out / "data", patients=size.patients, seed=seed, matrix=size.matrix, slices=size.slices)
    return manifest


def run_experiment(out_dir: "str | Path", size: str = "tiny", seed: int = 0, stages: Sequence[int] = (1, 2),
                   only: Optional[Sequence[str]] = None, device: str = "cpu") -> dict:
    """Train and score every variant (or those whose key is in ``only``); write results.json/.md."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sz = SIZES[size]
    manifest = _dataset(out, sz, seed + 100)
    chosen = [v for v in variants() if not only or v.key in only]
    if only and len(chosen) != len(set(only)):
        known = ", ".join(v.key for v in variants())
        raise ValueError(f"unknown variant in {list(only)}; known: {known}")
    results = {}
    for stage in stages:
        for v in chosen:
            run = out / f"stage{stage}" / v.key
            done = run / "result.json"
            if not done.is_file():
                res = train_from_manifest(variant_config(v, stage, sz, seed), manifest, run, out / "cache",
                                          out / "splits.json", device=device)
                meta, cached, probs = stage_probs(res.best_path, manifest, out / "cache", out / "splits.json", "test")
                rep, _, _ = stage_report(cached, probs, stage, meta["threshold"], meta["class_names"], sz.n_boot)
                done.write_text(json.dumps({"variant": v.key, "label": v.label, "table": v.table,
                                            "stage": stage, "report": rep}, indent=1))
            results[f"stage{stage}/{v.key}"] = json.loads(done.read_text())
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(results_markdown(results, size))
    return results


def results_markdown(results: dict, size: str) -> str:
    lines = [f"# Model comparison on synthetic phantoms (size {size}, test split)", ""]
    for stage, classes in ((1, list(STAGE_CLASSES[1])), (2, list(STAGE_CLASSES[2]))):
        for table, title in (("backbone", "backbones, fixed vs dynamic crop"), ("windows", "window sets")):
            rows = [(r["label"], r["report"]) for r in results.values() if r["stage"] == stage and r["table"] == table]
            if table == "windows":  # the DWL reference row comes from the backbone table
                ref = results.get(f"stage{stage}/cbamdrn_d22-dynamic")
                rows = ([(ref["label"], ref["report"])] if ref else []) + rows
            if rows:
                lines += [f"## Stage {stage}: {title}", "", slice_table(rows, classes), ""]
    return "\n".join(lines)
