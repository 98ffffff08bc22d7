"""Segmentation and cross-phase models: registry, output sizes at odd inputs, FUSA placement, files."""
from __future__ import annotations

import pytest
import torch

from PETriageLib.errors import CheckpointError
from PETriageLib.models import build_model, list_models, save_checkpoint
from PETriageLib.models.attention import FUSA
from PETriageLib.models.checkpoint import read_checkpoint
from PETriageLib.models.registry import model_task
from PETriageLib.models.seg_checkpoint import load_seg_checkpoint, save_seg_checkpoint

SEG_NAMES = ["cbamdrn_d22_seg", "resunet", "fusa_resunet", "cpmn"]


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


def test_registry_keeps_classifiers_and_tasks_apart() -> None:
    assert not set(SEG_NAMES) & set(list_models())  # describe_models and the classifier tests stay as they were
    assert list_models("segmentation") == ["cbamdrn_d22_seg", "resunet", "fusa_resunet"]
    assert list_models("cross_phase") == ["cpmn"]
    assert model_task("cpmn") == "cross_phase" and model_task("cbamdrn_d22") == "classification"
    with pytest.raises(ValueError, match="unknown task"):
        list_models("detection")


@pytest.mark.parametrize("name", SEG_NAMES)
@pytest.mark.parametrize("size", [(65, 67), (33, 80), (16, 16)])
def test_output_is_input_size(name: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, width=0.125).train()
    x = torch.randn(2, 2, *size)
    out = model(x)
    assert out.shape == (2, 1, *size)
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in model.named_parameters() if not n.startswith(("ctpa.", "nct.classifier")))  # inference: NCT segmentation only


def test_fusa_ends_each_of_four_encoder_blocks_only_in_fusa_resunet() -> None:
    fusa = build_model("fusa_resunet", width=0.125)
    plain = build_model("resunet", width=0.125)
    assert [type(s.attention) for s in fusa.encoder.stages] == [FUSA] * 4
    assert all(s.attention is None for s in plain.encoder.stages)
    assert not any(isinstance(m, FUSA) for m in plain.modules())


def test_drn_seg_head_starts_from_a_cascade_classifier() -> None:
    classifier = build_model("cbamdrn_d22", width=0.125)
    seg = build_model("cbamdrn_d22_seg", width=0.125)
    seg.load_backbone(classifier)
    for mine, theirs in zip(seg.branches, classifier.branches):
        assert torch.equal(mine.layer0[0].weight, theirs.layer0[0].weight)
    with pytest.raises(ValueError, match="windows"):
        seg.load_backbone(build_model("cbamdrn_d22", windows=("lung",), width=0.125))


@pytest.mark.parametrize("name", ["fusa_resunet", "cpmn"])
def test_checkpoint_round_trip_keeps_task_and_digest(tmp_path, name: str) -> None:
    torch.manual_seed(1)
    model = build_model(name, width=0.125).eval()
    path = save_seg_checkpoint(tmp_path / "seg.pt", model, input_size=64, training={"epochs": 1})
    again, meta = load_seg_checkpoint(path)
    assert meta["task"] == model.task and meta["input_size"] == 64
    assert [w["name"] for w in meta["windows"]] == ["vascular", "lung"]
    assert read_checkpoint(path)["digest"]["algorithm"] == "sha256"
    x = torch.randn(1, 2, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_a_classifier_file_is_not_a_segmentation_model(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "cls.pt", build_model("drn_d22", width=0.125),
                           {"input_size": 64, "class_names": ["no_pe", "pe"]})
    with pytest.raises(CheckpointError, match="not an embolus segmentation model"):
        load_seg_checkpoint(path)


def test_cpmn_pair_shapes_must_match() -> None:
    model = build_model("cpmn", width=0.125)
    with pytest.raises(ValueError, match="differ in shape"):
        model.forward_pair(torch.randn(1, 2, 32, 32), torch.randn(1, 2, 32, 48))
