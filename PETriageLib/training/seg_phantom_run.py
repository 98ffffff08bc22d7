"""One segmentation experiment on phantoms: train on some PE studies, score on held-out ones.

Training and evaluation slices come from ``phantom_seg_slices``; cross-phase models are trained on
CTPA/NCT pairs and scored on the NCT slices alone (their inference path), the others on CTPA.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PETriageLib.models.registry import model_task
from PETriageLib.models.seg_checkpoint import save_seg_checkpoint
from PETriageLib.training.seg_data import phantom_seg_slices
from PETriageLib.training.seg_eval import SegEvaluation, evaluate_segmentation
from PETriageLib.training.segmentation import (SegTrainConfig, SegTrainResult, predict_slices, train_cross_phase,
                                               train_segmentation)

log = logging.getLogger(__name__)


@dataclass
class PhantomSegData:
    train_seeds: Sequence[int]
    eval_seeds: Sequence[int]
    eval_negative_seeds: Sequence[int] = ()
    matrix: int = 96
    slices: int = 24
    crop: "int | None" = 48
    difficulty: str = "easy"


@dataclass
class SegRun:
    label: str
    result: SegTrainResult
    evaluation: SegEvaluation
    checkpoint: "Path | None" = None


def run_phantom_segmentation(data: PhantomSegData, configs: Sequence[SegTrainConfig],
                             out_dir: "str | Path | None" = None) -> list[SegRun]:
    """Train every config (same data), evaluate each on the held-out phantoms, save checkpoints."""
    pairs = any(model_task(c.model) == "cross_phase" for c in configs)
    common = dict(matrix=data.matrix, slices=data.slices, crop=data.crop, difficulty=data.difficulty, pairs=pairs)
    train = phantom_seg_slices(data.train_seeds, **common)
    test = phantom_seg_slices(data.eval_seeds, negative_seeds=data.eval_negative_seeds, **common)
    log.info("%d training slices, %d evaluation slices", len(train), len(test))
    runs = []
    for config in configs:
        cross = model_task(config.model) == "cross_phase"
        result = (train_cross_phase if cross else train_segmentation)(train, config)
        prob = predict_slices(result.model, test.nct if cross else test.x)
        evaluation = evaluate_segmentation(prob, test.mask, test.patient)
        label = f"{config.model} ({config.ablation})" if cross else config.model
        path = None
        if out_dir is not None:
            name = label.replace(" (", "_").replace(")", "").replace(" ", "_").lower()
            path = save_seg_checkpoint(Path(out_dir) / f"{name}.pt", result.model, input_size=test.x.shape[-1],
                                       training={"steps": config.steps, "lr": config.lr, "width": config.width,
                                                 "ablation": config.ablation if cross else None,
                                                 "train_seeds": list(data.train_seeds),
                                                 "data": "phantom, central crop"})
        runs.append(SegRun(label, result, evaluation, path))
    return runs
