"""Checkpoint metadata is validated where the file is read: a text or NaN threshold, a bad input
size, an unknown or degenerate window, NaN domain statistics are refused naming the file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from support.checkpoints import make_checkpoint

from PETriageLib.errors import CheckpointError
from PETriageLib.models.checkpoint import read_checkpoint, write_checkpoint
from PETriageLib.models.domain_stats import DomainModel
from PETriageLib.training.domain_fit import attach_domain_model
from PETriageLib.triage.stages import load_stage


@pytest.fixture(scope="module")
def stage2_file(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("meta") / "stage2.pt", 2)


def _with_meta(src, dst, **changes):
    data = torch.load(src, weights_only=True)
    data["meta"].update(changes)
    write_checkpoint(dst, data)
    return dst


@pytest.mark.parametrize("changes, message", [
    ({"threshold": "0.5"}, r"threshold '0\.5' is not a finite number in \[0, 1\]"),
    ({"threshold": float("nan")}, r"threshold nan is not a finite number"),
    ({"threshold": 5}, r"threshold 5 is not a finite number in \[0, 1\]"),
    ({"input_size": 0}, r"input_size 0 is not a whole number >= 1"),
    ({"input_size": "64"}, r"input_size '64' is not a whole number"),
    ({"windows": [{"name": "lung", "level": -600, "width": 0}]}, r"window .* needs a finite level and a positive width"),
    ({"windows": ["no-such-window"]}, r"window 'no-such-window' is not known"),
    ({"class_names": ["a"]}, r"class_names \['a'\] is not \[negative, positive\]"),
], ids=["text-threshold", "nan-threshold", "threshold-5", "size-0", "size-text", "width-0", "window-name", "classes"])
def test_bad_metadata_is_refused_naming_the_file(tmp_path, stage2_file, changes, message):
    bad = _with_meta(stage2_file, tmp_path / "bad.pt", **changes)
    with pytest.raises(CheckpointError, match=rf"checkpoint .*bad\.pt: its metadata {message}"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt"):
        load_stage(2, bad)
    assert read_checkpoint(stage2_file)["meta"]["threshold"] == 0.5  # the good file still reads


def test_nan_domain_statistics_are_refused(tmp_path, stage2_file):
    path = tmp_path / "s1.pt"
    make_checkpoint(path, 1)
    width = load_stage(1, path).model.fc.in_features
    mean = np.zeros(width)
    mean[3] = np.nan
    attach_domain_model(path, DomainModel(mean, np.eye(width), threshold=2.0))
    with pytest.raises(CheckpointError, match=r"s1\.pt: its domain statistics .* are not all finite"):
        load_stage(1, path)
