"""How a step's batch is spread over ranks and micro-batches (training/sampler.py), and the
resume check on the number of ranks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from PETriageLib.training.sampler import BatchPlan, epoch_order


def _groups(plan_of_rank, ranks: int, order: np.ndarray, step: int) -> dict[int, list[int]]:
    out = {}
    for rank in range(ranks):
        plan = plan_of_rank(rank)
        for group, rows in plan.groups(plan.rank_rows(order, step)):
            out[group] = rows.tolist()
    return out


def test_two_ranks_train_on_the_groups_of_one_process_with_two_micro_batches() -> None:
    targets = np.array([0] * 90 + [1] * 10)
    order = epoch_order(targets, "sampler", seed=3, epoch=1, steps=5, batch=16)
    for step in range(5):
        ranks = _groups(lambda r: BatchPlan(8, world_size=2, rank=r), 2, order, step)
        single = _groups(lambda r: BatchPlan(16, micro_batches=2), 1, order, step)
        assert ranks == single and sorted(ranks) == [0, 1]
        assert sorted(ranks[0] + ranks[1]) == sorted(order[step * 16:(step + 1) * 16].tolist())


def test_the_ranks_together_keep_the_class_balance() -> None:
    targets = np.array([0] * 950 + [1] * 50)
    order = epoch_order(targets, "sampler", seed=0, epoch=0, steps=200, batch=16)
    share = [float(targets[np.concatenate([BatchPlan(8, 2, r).rank_rows(order, s) for s in range(200)])].mean())
             for r in range(2)]
    assert all(0.4 < s < 0.6 for s in share), share  # 5% positives in the data, about half in the batches
    assert np.array_equal(order, epoch_order(targets, "sampler", seed=0, epoch=0, steps=200, batch=16))


def test_a_batch_that_does_not_split_into_micro_batches_is_refused() -> None:
    with pytest.raises(ValueError, match="does not split into 3 micro-batches"):
        BatchPlan(8, micro_batches=3)


def test_resume_with_another_number_of_ranks_is_refused(tmp_path) -> None:
    from PETriageLib.errors import CheckpointError
    from PETriageLib.models.checkpoint import write_checkpoint
    from PETriageLib.phantom.dataset import generate_dataset
    from PETriageLib.training.config import TrainConfig
    from PETriageLib.training.pipeline import train_from_manifest

    manifest = generate_dataset(tmp_path / "data", patients=4, seed=5, matrix=64, slices=8, pe_fraction=0.5)
    cfg = TrainConfig(stage=1, model_config={"width": 0.125}, input_size=64, epochs=1, batch_size=4,
                      steps_per_epoch=1, threads=1, progress=False)
    train_from_manifest(cfg, manifest, tmp_path / "run", ratios=(1, 1, 0))
    last = tmp_path / "run" / "last.pt"
    state = torch.load(last, weights_only=True)
    assert state["world_size"] == 1
    write_checkpoint(last, {**state, "world_size": 2})  # as if saved by 2 torchrun ranks
    cfg.epochs = 2
    with pytest.raises(CheckpointError, match=r"settings changed: ranks \(2 then, 1 now\)"):
        train_from_manifest(cfg, manifest, tmp_path / "run", ratios=(1, 1, 0))
