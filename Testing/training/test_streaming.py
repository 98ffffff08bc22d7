"""The streaming data path (training/stream.py) on tiny phantoms: the slices it decodes in
DataLoader workers are the cached slices to the bit, its series LRU stays bounded, and
`petriage train --no-cache` trains without writing a slice cache. Under torchrun:
test_distributed_training.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from PETriageLib.preprocess.slices import PreprocessConfig
from PETriageLib.training.cache import SliceDataset
from PETriageLib.training.config import TrainConfig
from PETriageLib.training.data import cached_splits
from PETriageLib.training.sampler import BatchPlan, epoch_order
from PETriageLib.training.stream import SeriesLRU, StreamLoader, StreamedSliceDataset, streamed_splits


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from PETriageLib.phantom.dataset import generate_dataset

    root = tmp_path_factory.mktemp("stream")
    manifest = generate_dataset(root / "data", patients=4, seed=5, matrix=64, slices=10, pe_fraction=0.5)
    return root, manifest


def _config(context: int = 1) -> TrainConfig:  # slice context: the neighbours' clamping must match too
    return TrainConfig(stage=1, model_config={"width": 0.125, "context": context}, input_size=64, threads=1,
                       progress=False)


@pytest.fixture(scope="module")
def both(phantoms):
    root, manifest = phantoms
    pre = _config().preprocess_dict()
    cached = cached_splits(manifest, pre, root / "cache", root / "splits.json", wanted=("train",), ratios=(1, 0, 0))
    streamed = streamed_splits(manifest, pre, root / "index", root / "splits.json", wanted=("train",),
                               ratios=(1, 0, 0), workers=1)
    config = PreprocessConfig.from_dict(pre)
    return SliceDataset(cached["train"], 1), StreamedSliceDataset(streamed["train"], 1, config, 2)


def test_streamed_slices_equal_the_cached_slices(both) -> None:
    cached, streamed = both
    assert len(cached) > 20 and streamed.rows == cached.rows  # the index finds the same slices with lung
    assert np.array_equal(streamed.targets, cached.targets) and streamed.class_counts() == cached.class_counts()
    rows = np.random.default_rng(0).choice(len(cached), 12, replace=False)  # slices of several series, any order
    a, ya = cached.batch(rows)
    b, yb = streamed.batch(rows)
    assert a.shape == b.shape == (12, 6, 64, 64) and a.dtype == b.dtype == np.float32
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert len({cached.rows[n][0] for n in rows}) > 1
    x, y = streamed[int(rows[0])]
    assert np.array_equal(x, a[0]) and y == ya[0]


def test_the_series_lru_stays_bounded_and_reuses_series(both) -> None:
    _, streamed = both
    lru = SeriesLRU(streamed.config, size=1)
    src = [s.source for s in streamed.sources]
    lru.get(0, src[0]), lru.get(0, src[0])
    assert lru.decoded == 1
    lru.get(1, src[1]), lru.get(0, src[0])
    assert lru.decoded == 3 and len(lru._items) == 1
    with pytest.raises(ValueError, match="at least 1"):
        SeriesLRU(streamed.config, size=0)


def test_worker_batches_come_in_the_sampler_order_of_each_rank(both) -> None:
    cached, streamed = both
    order = epoch_order(cached.targets, "sampler", 0, 0, steps=3, batch=8)
    loader = StreamLoader(streamed, workers=2, prefetch=1)
    for rank in (0, 1):  # each rank asks only for its rows of each step's effective batch
        plan = BatchPlan(4, 2, rank, 2)
        groups = [rows for st in range(3) for _, rows in plan.groups(plan.rank_rows(order, st))]
        assert sorted(np.concatenate(groups)) == sorted(
            np.concatenate([order[st * 8 + rank * 4: st * 8 + rank * 4 + 4] for st in range(3)]))
        got = list(loader.batches(groups))  # the same persistent workers serve each epoch
        assert len(got) == len(groups) == 6
        for rows, (x, y) in zip(groups, got):
            want_x, want_y = cached.batch(rows)
            assert np.array_equal(x, want_x) and np.array_equal(y, want_y)
    with pytest.raises(ValueError, match="at least 1 DataLoader worker"):
        StreamLoader(streamed, workers=0)


def test_train_no_cache_completes_without_a_slice_cache(phantoms, tmp_path: Path) -> None:
    _, manifest = phantoms
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "PETriageLib.cli", "train", "--manifest", str(manifest), "--stage", "1",
           "--out", str(out), "--width", "0.125", "--input-size", "64", "--epochs", "1", "--batch-size", "4",
           "--steps-per-epoch", "3", "--threads", "1", "--no-progress", "--ratios", "2,1,1", "--no-cache",
           "--workers", "1", "--series-per-worker", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "streaming the training slices: 1 DataLoader worker(s)" in proc.stderr
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 0 and state["epoch"] == 1 and len(state["history"]) == 1
    assert (out / "best.pt").is_file() and json.loads((out / "history.json").read_text())[0]["steps"] == 3
    assert not (out / "cache").exists()  # only the small index was written
    splits = json.loads((out / "splits.json").read_text())
    indexed = len(splits["train"]) + len(splits["val"])  # one source per patient; the test split is not read
    assert indexed == 4 and len(list((out / "stream-index").glob("*/*.json"))) == indexed


def test_streaming_refuses_the_lesion_map_loss(phantoms, tmp_path: Path) -> None:
    from PETriageLib.training.pipeline import train_from_manifest

    _, manifest = phantoms
    cfg = TrainConfig(**{**_config(0).to_dict(), "mask_loss_weight": 0.5})
    with pytest.raises(ValueError, match="needs the slice cache"):
        train_from_manifest(cfg, manifest, tmp_path / "masks", data="stream")
