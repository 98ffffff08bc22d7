"""`petriage train` under `torchrun --nproc-per-node 2` (gloo, CPU) on tiny phantoms: it trains the
same weights as one process with the same effective batch; a killed rank stops the launch, and
the same command run again resumes from the last checkpoint and ends with the same weights.

Why the single-process run uses 2 micro-batches: under DDP each rank's BatchNorm normalises its
own half of the step's batch (SyncBatchNorm refuses CPU modules). One process that runs the two
halves separately and sums their gradients (``micro_batches=2``) does exactly that, so the
trained parameters agree up to the order of float sums. The BatchNorm running statistics differ
by design (DDP keeps rank 0's, which saw half the slices) and are not compared.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from PETriageLib.training.config import TrainConfig
from PETriageLib.training.data import cached_splits
from PETriageLib.training.pipeline import train_from_manifest

STEPS, EPOCHS = 6, 2
ARGS = ["--stage", "1", "--model", "cbamdrn_d22", "--width", "0.125", "--input-size", "64", "--epochs", str(EPOCHS),
        "--batch-size", "4", "--steps-per-epoch", str(STEPS), "--save-every", "2", "--threads", "1", "--no-progress"]


def _single_process_config() -> TrainConfig:  # ARGS with the effective batch (2 x 4) in one process
    return TrainConfig(stage=1, model_config={"width": 0.125}, input_size=64, epochs=EPOCHS, batch_size=8,
                       micro_batches=2, steps_per_epoch=STEPS, save_every=2, threads=1, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from PETriageLib.phantom.dataset import generate_dataset

    root = tmp_path_factory.mktemp("ddp")
    manifest = generate_dataset(root / "data", patients=6, seed=21, matrix=64, slices=12, pe_fraction=0.5)
    cached_splits(manifest, _single_process_config().preprocess_dict(), root / "cache", root / "splits.json",
                  wanted=("train", "val"), ratios=(2, 1, 0))
    return root, manifest


def _torchrun(root: Path, manifest: Path, out: str, *extra: str, tag: str = "", tail: bool = False) -> subprocess.Popen:
    """``extra``: torchrun options, or with ``tail`` options of `petriage train`."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PETRIAGE_TEST_TAG=tag or uuid.uuid4().hex)
    launch, train_extra = ([], list(extra)) if tail else (list(extra), [])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *launch,
           "-m", "PETriageLib.cli", "train", "--manifest", str(manifest), "--out", str(root / out),
           "--cache", str(root / "cache"), "--splits", str(root / "splits.json"), *ARGS, *train_extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, "\n".join(line for line in err.splitlines() if "ERROR" in line or "Error" in line)
    return out, err


def _printed_result(stdout: str) -> dict:
    """The JSON object `petriage train` prints last (rank 0 only)."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def _parameters(path: Path) -> dict:
    """Trainable weights of a last.pt: BatchNorm running statistics are per rank by design."""
    state = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.fixture(scope="module")
def two_ranks(data):
    root, manifest = data
    out, err = _finish(_torchrun(root, manifest, "ddp"))
    return root, manifest, _printed_result(out), err


def test_two_gloo_ranks_train_what_one_process_trains_with_the_same_effective_batch(two_ranks) -> None:
    root, manifest, printed, err = two_ranks
    assert printed["ranks"] == 2 and printed["resumed_from"] is None
    assert "effective batch 8 (4 per rank x 2 rank(s), 1 micro-batch(es) each)" in err
    assert err.count("stage 1 epoch 1:") == 1  # rank 0 logs, rank 1 does not
    single = train_from_manifest(_single_process_config(), manifest, root / "single", root / "cache",
                                 root / "splits.json")
    a, b = _parameters(root / "ddp" / "last.pt"), _parameters(root / "single" / "last.pt")
    assert a.keys() == b.keys()
    start = TrainConfig(stage=1, model_config={"width": 0.125})  # the weights both started from
    from PETriageLib.training.train import build_for_training

    init = build_for_training(start).state_dict()
    moved = max(float((b[k].float() - init[k].float()).abs().max()) for k in b)
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in b)
    # Both runs moved the weights by ~5e-3; the two agreed to the bit on this machine (torch 2.14.1),
    # while one process with a single batch of 8 ends 1e-2 away. The tolerance leaves room for another
    # order of the all-reduce's float sums.
    assert moved > 1e-3
    assert worst < 1e-5, (worst, moved)
    history = json.loads((root / "ddp" / "history.json").read_text())
    # The epoch's training loss counts both ranks' slices, so it is the single process's loss.
    for ours, theirs in zip(history, single.history):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
    assert not (root / "ddp" / "splits.json").exists()  # one splits file, the shared one


def _rank_pid(tag: str, rank: int) -> "int | None":
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PETRIAGE_TEST_TAG={tag}".encode() in env and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


def test_a_killed_rank_stops_the_run_and_the_same_command_resumes_from_the_last_checkpoint(two_ranks) -> None:
    root, manifest, _, _ = two_ranks
    tag = uuid.uuid4().hex
    proc = _torchrun(root, manifest, "killed", tag=tag)
    last = root / "killed" / "last.pt"
    killed = False
    deadline = time.time() + 200
    try:
        while time.time() < deadline and proc.poll() is None and not killed:
            if last.is_file():
                state = torch.load(last, weights_only=True)
                pid = _rank_pid(tag, 1)
                if 0 < state["step"] < STEPS and pid is not None:
                    os.kill(pid, signal.SIGKILL)  # rank 1, not the rank that writes the checkpoints
                    killed = True
            time.sleep(0.02)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert killed, "the run ended before a mid-epoch checkpoint was seen"
    assert proc.returncode != 0 and "exitcode  : -9" in err  # torchrun stops the other rank and fails
    saved = torch.load(last, weights_only=True)  # what survived (rank 0 writes it atomically)
    assert 0 < saved["step"] < STEPS

    out, err = _finish(_torchrun(root, manifest, "killed"))  # the same command again
    assert _printed_result(out)["resumed_from"] == {"epoch": saved["epoch"], "step": saved["step"]}
    assert f"resuming {last} at epoch {saved['epoch']} step {saved['step']}" in err
    history = json.loads((root / "killed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    a, b = _parameters(root / "killed" / "last.pt"), _parameters(root / "ddp" / "last.pt")
    for key in b:  # every step seeded from (seed, step): the resumed run ends where the straight one did
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


def test_two_ranks_streaming_without_the_cache_train_the_cached_weights(two_ranks) -> None:
    """--no-cache under torchrun: each rank indexes its share of the sources and its DataLoader
    worker decodes only that rank's rows; the inputs equal the cached ones, so do the weights."""
    root, manifest, _, _ = two_ranks
    out, err = _finish(_torchrun(root, manifest, "ddp_stream", "--no-cache", "--workers", "1", tail=True))
    assert _printed_result(out)["ranks"] == 2
    assert err.count("streaming the training slices: 1 DataLoader worker(s)") == 1  # rank 0 logs
    a, b = _parameters(root / "ddp_stream" / "last.pt"), _parameters(root / "ddp" / "last.pt")
    assert a.keys() == b.keys()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in b) < 1e-6
    splits = json.loads((root / "splits.json").read_text())
    assert len(list((root / "cache" / "stream-index").glob("*/*.json"))) == len(splits["train"]) + len(splits["val"])
    assert not (root / "ddp_stream" / "cache").exists()
