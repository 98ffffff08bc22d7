"""The fast inference path stays within its tolerance of eager fp32 and falls back when it does not."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn
from support.batchnorm import randomize_batchnorm

from PETriageLib.models.fast import (
    DEFAULT_TOLERANCE,
    FastOptions,
    FastPredictor,
    bf16_supported,
    compare,
    fold_batchnorm,
    naive_predictor,
    optimize_model,
)
from PETriageLib.models import build_model

SIZE = 64


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(build_model("cbamdrn_d22", ("vascular", "lung"), width=0.125)).eval()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (6, 2, SIZE, SIZE)).astype(np.float32)


def _fp32_probs(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(model(torch.from_numpy(images))).reshape(-1).numpy()


def test_fold_batchnorm_removes_every_bn_and_keeps_logits(tiny, images):
    folded, mode = optimize_model(tiny, "cpu", FastOptions(bf16=False, channels_last=False))
    assert mode == "fold_bn"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny.modules()), "the input model must not change"
    x = torch.from_numpy(images)
    with torch.inference_mode():
        ref, out = tiny(x), folded(x)
    assert out.dtype == torch.float32 and out.shape == (len(images), 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_fold_batchnorm_on_torchvision_resnet50():
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("resnet50", ("vascular", "lung"))).eval()
    x = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, (2, 2, SIZE, SIZE)).astype(np.float32))
    with torch.inference_mode():
        ref = model(x).clone()
        fold_batchnorm(model)
        out = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


def test_fold_batchnorm_refuses_training_mode():
    model = build_model("drn_d22", ("lung",), width=0.125).train()
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(model)


def test_default_fast_path_within_tolerance_of_fp32(tiny, images):
    predictor = FastPredictor(tiny, "cpu", batch_size=4)
    probs = predictor(images)  # validates on the first batch, then predicts all
    assert probs.shape == (len(images),) and probs.dtype == np.float32
    ref = _fp32_probs(tiny, images)
    assert np.max(np.abs(probs - ref)) <= DEFAULT_TOLERANCE
    v = predictor.validation
    assert v is not None and v.passed and v.n == len(images) and v.max_abs_dp <= DEFAULT_TOLERANCE
    if bf16_supported("cpu"):  # the first candidate, bf16 everywhere, passes on this model
        assert predictor.mode == "fold_bn+bf16+channels_last"
    else:
        assert predictor.mode == "fold_bn+channels_last"
    assert not predictor.fallback


def test_forced_bf16_keeps_gates_fp32_and_stays_close(tiny, images):
    fast, mode = optimize_model(tiny, "cpu", FastOptions(bf16=True, fp32_gates=True))
    assert mode == "fold_bn+fp32_gates+bf16+channels_last"
    gates = [m for m in fast.modules() if type(m).__name__ == "Float32Module"]
    assert gates and all(p.dtype == torch.float32 for g in gates for p in g.parameters())
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d) and m.weight.dtype == torch.bfloat16]
    assert convs, "the backbone convolutions run in bf16"
    v = compare(fast, tiny, images, tolerance=DEFAULT_TOLERANCE)
    assert v.passed and v.n == len(images) and 0.0 <= v.mean_abs_dp <= v.max_abs_dp
    assert v.label_agreement >= 5 / 6


def test_falls_back_to_fp32_when_difference_exceeds_tolerance(tiny, images):
    predictor = FastPredictor(tiny, "cpu", FastOptions(bf16=True), tolerance=1e-9, batch_size=4)
    assert [o.fp32_gates for o in predictor.candidates()] == [False, True]
    v = predictor.validate(images)
    # both candidates were tried: the last check is the bf16 path with fp32 gates
    assert not v.passed and v.max_abs_dp > 1e-9 and v.mode == "fold_bn+fp32_gates+bf16+channels_last"
    assert predictor.fallback and predictor.mode == "fold_bn"
    np.testing.assert_allclose(predictor(images), _fp32_probs(tiny, images), atol=1e-5)
    assert predictor.describe()["fallback"] is True


def test_padding_the_last_batch_keeps_results(tiny, images):
    padded = FastPredictor(tiny, "cpu", FastOptions(bf16=False, pad_batches=True), batch_size=4)
    plain = FastPredictor(tiny, "cpu", FastOptions(bf16=False, pad_batches=False), batch_size=4)
    assert padded.pad_batches and not plain.pad_batches
    a, b = padded(images[:3]), plain(images[:3])
    assert a.shape == (3,)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_naive_predictor_is_eager_fp32(tiny, images):
    naive = naive_predictor(tiny, "cpu", batch_size=4)
    assert naive.mode == "fp32"
    np.testing.assert_allclose(naive(images), _fp32_probs(tiny, images), atol=1e-6)


def test_small_first_batches_are_topped_up_to_the_validation_size(tiny, images):
    from PETriageLib.models.fast import VALIDATE_SLICES

    predictor = FastPredictor(tiny, "cpu", batch_size=4)
    predictor(images[:2])
    assert predictor.validation.n == 2
    predictor(images[2:])  # 4 more: checked too
    assert predictor.validation.n == 6 <= VALIDATE_SLICES
    assert predictor.validation.passed and not predictor.fallback
    predictor(images)  # 2 more reach VALIDATE_SLICES = 8; no further checks after that
    predictor(images)
    assert predictor.validation.n == VALIDATE_SLICES


def test_a_failing_top_up_switches_to_fp32(tiny, images):
    predictor = FastPredictor(tiny, "cpu", FastOptions(bf16=True, fp32_gates=False), batch_size=4)
    assert predictor.validate(images[:1]).passed or predictor.fallback
    if predictor.fallback:
        pytest.skip("bf16 already differed on the first slice")
    predictor.tolerance = 1e-9  # the next slices now count as too different
    predictor(images[1:])
    assert predictor.fallback and predictor.mode == "fold_bn" and not predictor.validation.passed
    np.testing.assert_allclose(predictor(images), _fp32_probs(tiny, images), atol=1e-5)


def test_two_threads_each_run_part_of_the_batch_with_the_same_probabilities(tiny, images, monkeypatch):
    from PETriageLib.models import fast

    calls = []
    real = fast.run_in_parts
    monkeypatch.setattr(fast, "run_in_parts", lambda module, x, parts: calls.append(len(x)) or real(module, x, parts))
    before = torch.get_num_threads()
    try:
        whole = FastPredictor(tiny, "cpu", FastOptions(bf16=False, threads=2, split_batch=False))
        parts = FastPredictor(tiny, "cpu", FastOptions(bf16=False, threads=2))
        assert (whole.parts, parts.parts) == (1, 2) and parts.describe()["parts"] == 2
        p_whole = whole(images)
        assert calls == []
        p_parts = parts(images)
        assert calls and len(images) in calls  # the check against fp32 and the prediction both ran in parts
        np.testing.assert_allclose(p_parts, p_whole, atol=1e-5)
        assert parts.validation.passed and parts.validation.n == len(images)
        # the workers run one intra-op thread each; the caller, and threads started after, keep two
        assert torch.get_num_threads() == 2
        seen = []
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert seen == [2]
        assert {fast.part_pool(2).submit(torch.get_num_threads).result() for _ in range(4)} == {1}
        # a batch of one is not cut; compiled, padding or one-thread predictors never split
        assert parts(images[:1]).shape == (1,)
        assert FastPredictor(tiny, "cpu", FastOptions(bf16=False, threads=1)).parts == 1
        for options in (FastOptions(threads=2, compile=True, split_batch=True), FastOptions(threads=2, pad_batches=True)):
            assert FastPredictor(tiny, "cpu", options).parts == 1
        assert naive_predictor(tiny).parts == 1
    finally:
        torch.set_num_threads(before)
