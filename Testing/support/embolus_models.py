"""Tiny embolus models for tests: a ResUnet segmentation model and a CPMN, trained a few steps on
phantom clot slices (the real training helpers; width 0.125, 32 px crops), saved at several pixel
thresholds so a test knows what the mask must be (0: every voxel; 1: none, as a sigmoid of these tiny models never reaches 1)."""
from __future__ import annotations

from pathlib import Path

from PETriageLib.models.seg_checkpoint import save_seg_checkpoint
from PETriageLib.training.seg_data import phantom_seg_slices
from PETriageLib.training.segmentation import SegTrainConfig, train_cross_phase, train_segmentation

INPUT_SIZE = 32
THRESHOLDS = {"all": 0.0, "none": 1.0, "own": 0.5}


def make_embolus_checkpoints(out: Path) -> dict[str, Path]:
    """``{"seg_all", "seg_none", "seg_own", "nct_all", "nct_none", "nct_own"}`` -> checkpoint paths."""
    data = phantom_seg_slices([0], matrix=64, slices=12, crop=INPUT_SIZE, pairs=True)
    models = {"seg": train_segmentation(data, SegTrainConfig(model="resunet", width=0.125, steps=3, batch_size=4)),
              "nct": train_cross_phase(data, SegTrainConfig(model="cpmn", width=0.125, steps=3, batch_size=4))}
    paths = {}
    for kind, trained in models.items():
        for label, threshold in THRESHOLDS.items():
            paths[f"{kind}_{label}"] = save_seg_checkpoint(out / f"{kind}_{label}.pt", trained.model, INPUT_SIZE,
                                                           threshold=threshold, training={"steps": 3})
    return paths
