"""The shipped demo models, on fresh phantoms they never saw, discriminate clearly better than chance.

A floor, not the paper's targets: the demo models are weak (docs/training.md gives their test
tables: AUROC 0.921 for stage 1 and 0.974 for stage 2 on 40 held-out patients). This guards
against shipping untrained, mismatched or corrupted weights; a chance-level model scores 0.5.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from PETriageLib.phantom import generate_study
from PETriageLib.training.metrics import auroc_ci

# (seed, pe, other disease): seeds far from those the demo models were trained on (1000-1101, 1200-1201 and 1300-1301 data sets)
CASES = [(71, True, False), (72, False, True), (73, False, False), (74, True, True), (75, False, True),
         (76, True, False)]


@pytest.fixture(scope="module")
def shipped_cascade():
    from PETriageLib.cascade import Cascade, default_models
    from PETriageLib.errors import CheckpointError

    try:
        stage1, stage2 = default_models()
    except CheckpointError as exc:
        pytest.skip(f"no shipped stage 1/2 models: {exc}")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Cascade.from_checkpoints(stage1, stage2, device="cpu")
    torch.set_num_threads(before)


def test_shipped_models_beat_chance_on_unseen_phantoms(shipped_cascade) -> None:
    y1, p1, y2, p2 = [], [], [], []
    for seed, pe, other in CASES:
        study = generate_study(seed, matrix=256, slices=40, pe=pe, other=other, contrast="ctpa")
        result = shipped_cascade.run(study.volume)
        assert len(result.rows) == len(study.slice_labels) == 40
        for row, truth in zip(result.rows, study.slice_labels):
            if row.has_lung and row.p_disease is not None:
                y1.append(truth != "wnl")
                p1.append(row.p_disease)
            if truth != "wnl" and row.p_pe is not None:
                y2.append(truth == "pe")
                p2.append(row.p_pe)
        if pe:  # every PE phantom here has clots the models find (patient sensitivity 100% on the test set)
            assert result.verdict.verdict == "pe_suspected", (seed, result.verdict.reason)
    assert len(y1) > 150 and 30 < sum(y1) < len(y1) and len(y2) > 30
    # the models shipped on 2026-11-29 (224 px, stage 1 with slice context) score 0.994 (stage 1, 201
    # slices) and 0.891 (stage 2, 57 slices)
    assert auroc_ci(np.array(y1, int), np.array(p1), n_boot=0)["auroc"] > 0.68
    assert auroc_ci(np.array(y2, int), np.array(p2), n_boot=0)["auroc"] > 0.62
