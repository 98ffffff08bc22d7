"""`petriage train-seg` and `petriage segment`: a checkpoint written, read back, and its maps on the CT grid."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from PETriageLib.cli import main
from PETriageLib.ingest.load import load_series
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


@pytest.fixture(scope="module")
def cpmn_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    code = main(["-q", "train-seg", "--model", "cpmn", "--ablation", "no-ifd", "--train-patients", "1",
                 "--eval-patients", "1", "--eval-negatives", "1", "--steps", "2", "--matrix", "64", "--slices", "12",
                 "--crop", "32", "--out", str(out)])
    assert code == 0
    return out / "cpmn_no_ifd.pt"


def test_train_seg_writes_the_checkpoint_with_its_training(cpmn_checkpoint) -> None:
    _, meta = load_seg_checkpoint(cpmn_checkpoint)
    assert meta["task"] == "cross_phase" and meta["input_size"] == 32
    assert meta["training"]["ablation"] == "no IFD" and meta["training"]["train_seeds"] == [0]


def test_segment_writes_maps_on_the_series_grid(cpmn_checkpoint, phantom_series_dir, tmp_path, capsys) -> None:
    assert main(["-q", "segment", str(phantom_series_dir), "--model", str(cpmn_checkpoint), "--out",
                 str(tmp_path), "--threshold", "0.0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    volume = load_series(phantom_series_dir)
    img = sitk.ReadImage(summary["files"]["embolus_probability"])
    assert sitk.GetArrayFromImage(img).shape == volume.hu.shape
    assert np.allclose(img.GetSpacing(), volume.spacing) and np.allclose(img.GetOrigin(), volume.origin)
    # threshold 0: every voxel is "clot", so the volume is the whole grid's
    whole = np.prod(volume.hu.shape) * np.prod(volume.spacing) / 1000
    assert summary["clot_volume_ml"] == pytest.approx(whole, rel=1e-3)
    assert summary["components"] == 1 and summary["slices"] == list(range(volume.num_slices))
    assert summary["min_component_ml"] == 0.0  # the phantom runs keep every component
    assert json.loads((tmp_path / "segment.json").read_text()) == summary


def test_a_classifier_checkpoint_is_refused(tiny_checkpoints, phantom_series_dir, tmp_path) -> None:
    assert main(["-q", "segment", str(phantom_series_dir), "--model", str(tiny_checkpoints[0]),
                 "--out", str(tmp_path)]) != 0
