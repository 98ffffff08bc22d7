"""`petriage train-seg --anatomy real`: trains on real-anatomy pairs, prints the volume and per-level
tables, stores the validation operating point and pixel size in the checkpoint, and resumes."""
from __future__ import annotations

import logging

import pytest

from PETriageLib.cli import main
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint
from Testing.support.data_paths import CADPE_VESSELS

pytestmark = pytest.mark.skipif(not CADPE_VESSELS.is_dir(), reason=f"real CAD-PE masks not found at {CADPE_VESSELS}")

ARGS = ["-q", "train-seg", "--anatomy", "real", "--model", "resunet", "--train-patients", "1",
        "--validation-patients", "1", "--eval-patients", "1", "--steps", "3", "--pixel-mm", "3.0",
        "--slice-thickness", "5", "--patch", "32", "--cases-dir", str(CADPE_VESSELS)]


def test_real_anatomy_training_tables_checkpoint_and_resume(tmp_path, capsys, caplog) -> None:
    out = tmp_path / "models"
    assert main(ARGS + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| resunet on CTPA |" in printed and "| resunet on NCT |" in printed
    assert "Patient sens. (%, 95% CI)" in printed and "subsegmental: found / recall (%)" in printed
    _, meta = load_seg_checkpoint(out / "resunet.pt")
    assert meta["pixel_mm"] == 3.0 and meta["min_component_ml"] >= 0.0 and 0.0 < meta["threshold"] < 1.0
    assert meta["training"]["train_cases"] == ["001"]
    before = (out / "resunet.pt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="PETriageLib.training.seg_real_run"):
        assert main(ARGS + ["--out", str(out)]) == 0
    assert "already trained" in caplog.text and (out / "resunet.pt").stat().st_mtime_ns == before
