"""Kill a training process mid-epoch (SIGKILL) and resume: it continues from the saved step and
ends with exactly the weights of an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from PETriageLib.training.config import TrainConfig
from PETriageLib.training.data import cached_splits
from PETriageLib.training.pipeline import train_from_manifest

ARGS = ["--stage", "1", "--model", "cbamdrn_d22", "--width", "0.125", "--input-size", "64", "--epochs", "2",
        "--batch-size", "8", "--steps-per-epoch", "8", "--save-every", "2", "--threads", "1", "--no-progress"]


def _config() -> TrainConfig:  # what ARGS mean, built in-process
    return TrainConfig(stage=1, model_config={"width": 0.125}, input_size=64, epochs=2, batch_size=8,
                       steps_per_epoch=8, save_every=2, threads=1, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from PETriageLib.phantom.dataset import generate_dataset

    root = tmp_path_factory.mktemp("resume")
    manifest = generate_dataset(root / "data", patients=6, seed=21, matrix=96, slices=16, pe_fraction=0.5)
    cached_splits(manifest, _config().preprocess_dict(), root / "cache", root / "splits.json",
                  wanted=("train", "val"), ratios=(2, 1, 0))  # cache once, outside the timed runs
    return root, manifest


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(data) -> None:
    root, manifest = data
    cmd = [sys.executable, "-c", "from PETriageLib.cli import main; raise SystemExit(main())", "-q", "train",
           "--manifest", str(manifest), "--out", str(root / "killed"), "--cache", str(root / "cache"),
           "--splits", str(root / "splits.json"), *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = root / "killed" / "last.pt"
    saved = None
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.is_file():
                state = torch.load(last, weights_only=True)
                if state["epoch"] == 0 and 0 < state["step"] < 8:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    saved = torch.load(last, weights_only=True)  # what survived the kill (written atomically)
    assert saved["epoch"] == 0 and saved["step"] in (2, 4, 6)

    resumed = train_from_manifest(_config(), manifest, root / "killed", root / "cache", root / "splits.json")
    assert resumed.resumed_from == {"epoch": 0, "step": saved["step"]}
    assert [h["epoch"] for h in resumed.history] == [1, 2]

    straight = train_from_manifest(_config(), manifest, root / "straight", root / "cache", root / "splits.json")
    assert straight.resumed_from is None
    a = torch.load(root / "killed" / "last.pt", weights_only=True)["model"]
    b = torch.load(root / "straight" / "last.pt", weights_only=True)["model"]
    for key in b:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key


def test_resume_refuses_changed_settings(data) -> None:
    from PETriageLib.errors import CheckpointError

    root, manifest = data
    out = root / "changed"
    cfg = _config()
    cfg.epochs, cfg.steps_per_epoch = 1, 2
    train_from_manifest(cfg, manifest, out, root / "cache", root / "splits.json")
    cfg.lr = 0.01
    with pytest.raises(CheckpointError, match="settings changed: lr"):
        train_from_manifest(cfg, manifest, out, root / "cache", root / "splits.json")
