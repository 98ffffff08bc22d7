"""The two-stage cascade on a phantom series: rows, stage 2 selection, callbacks, device, heatmaps."""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from support.checkpoints import make_checkpoint

from PETriageLib.explain.heatmaps import compute_heatmaps
from PETriageLib.progress import Cancelled
from PETriageLib.triage.cascade import build_cascade
from PETriageLib.triage.stage_runner import select_device
from PETriageLib.errors import CheckpointError
from PETriageLib.preprocess.lungs import analyse_lungs
from PETriageLib.preprocess.slices import prepare_slices


@pytest.fixture(scope="module")
def cascade(tiny_checkpoints, tmp_path_factory):
    # Stage 2 sees other windows at another size, so it needs its own preprocessing.
    stage2 = make_checkpoint(tmp_path_factory.mktemp("s2") / "stage2_pe.pt", 2, input_size=72, windows=("pe", "lung"))
    return build_cascade(tiny_checkpoints[0], stage2, device="cpu", batch_size=8, min_slices=10)


@pytest.fixture(scope="module")
def all_slices_run(cascade, phantom_study):
    calls = []
    options = cascade.options
    cascade.options = dataclasses.replace(options, all_slices=True)
    try:
        result = cascade.run(phantom_study.volume, progress=lambda d, n, m: calls.append((d, n, m)))
    finally:
        cascade.options = options
    return result, calls


def test_rows_cover_every_slice_in_order(all_slices_run, phantom_study):
    result, _ = all_slices_run
    vol = phantom_study.volume
    lungs = analyse_lungs(vol)
    assert [r.index for r in result.rows] == list(range(vol.num_slices))
    assert [r.z for r in result.rows] == pytest.approx(list(vol.z_positions))
    assert [r.instance_uid for r in result.rows] == list(vol.instance_uids)
    assert [r.has_lung for r in result.rows] == [s.has_lung for s in lungs]
    assert 0 < sum(r.has_lung for r in result.rows) < vol.num_slices  # phantom has lung-free ends
    for r in result.rows:
        assert r.analysable == r.has_lung
        if r.analysable:
            assert 0.0 < r.p_disease < 1.0 and 0.0 < r.p_pe < 1.0  # all_slices: stage 2 everywhere
            assert r.label in ("wnl", "other", "pe")
        else:
            assert r.p_disease is None and r.p_pe is None and r.label is None
    assert not cascade_shared(result)
    assert result.models[0].stage == 1 and result.models[1].input_size == 72
    assert len(result.models[0].sha256) == 64
    assert set(result.timings) == {"preprocessing", "preprocessing_ahead", "stage1", "stage2"}
    assert result.timings["stage1"] > 0 and result.timings["stage2"] > 0


def cascade_shared(result) -> bool:
    return result.run.shared_preprocessing


def test_progress_reports_every_batch_up_to_the_total(all_slices_run):
    result, calls = all_slices_run
    n_lung = sum(r.has_lung for r in result.rows)
    model_calls = [c for c in calls if c[2] != "lungs"]
    assert model_calls[0][:2] == (0, n_lung) and model_calls[-1][:2] == (n_lung, n_lung)
    assert len(model_calls) == 1 + -(-n_lung // 8)
    assert [c[0] for c in model_calls] == sorted(c[0] for c in model_calls)
    lung_calls = [c for c in calls if c[2] == "lungs"]
    assert lung_calls[-1][:2] == (len(result.rows), len(result.rows))


def test_stage2_runs_only_on_slices_stage1_calls_diseased(cascade, all_slices_run, phantom_study):
    ref, _ = all_slices_run
    p1 = np.array([r.p_disease for r in ref.rows if r.analysable])
    t1 = float(np.median(p1))
    old = cascade.options
    cascade.options = dataclasses.replace(old, threshold_disease=t1)
    try:
        result = cascade.run(phantom_study.volume)
    finally:
        cascade.options = old
    diseased = [r for r in result.rows if r.analysable and r.p_disease >= t1]
    normal = [r for r in result.rows if r.analysable and r.p_disease < t1]
    assert diseased and normal
    assert all(r.p_pe is not None for r in diseased) and all(r.p_pe is None and r.label == "wnl" for r in normal)
    # Batching differs between the runs; eval-mode probabilities must not.
    for r, a in zip(result.rows, ref.rows):
        if r.p_pe is not None:
            assert r.p_pe == pytest.approx(a.p_pe, abs=1e-5)
            assert r.p_disease == pytest.approx(a.p_disease, abs=1e-5)
    assert result.verdict.threshold_disease == t1
    assert result.verdict.verdict in ("pe_suspected", "other_disease")


def test_cancel_between_batches(cascade, phantom_study, all_slices_run):
    seen = []
    with pytest.raises(Cancelled, match="cancelled after 8 of"):
        cascade.run(phantom_study.volume, progress=lambda d, n, m: seen.append(d) if m != "lungs" else None,
                    cancel=lambda: len(seen) >= 2)
    assert seen == [0, 8]
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled, match="after 0 of"):
        cascade.run(phantom_study.volume, cancel=event)
    with pytest.raises(Cancelled, match="Grad-CAM cancelled after 0 of 1"):
        compute_heatmaps(cascade, all_slices_run[0], [5], cancel=event)


def test_device_choice_and_cpu_fallback(tiny_checkpoints):
    assert select_device("cpu", cuda_available=True).type == "cpu"
    assert select_device("auto", cuda_available=True).type == "cuda"
    assert select_device("auto", cuda_available=False).type == "cpu"
    assert select_device("cuda", cuda_available=False).type == "cpu"  # the fallback
    assert str(select_device("cuda:1", cuda_available=True)) == "cuda:1"
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")
    import torch

    if not torch.cuda.is_available():
        c = build_cascade(*tiny_checkpoints, device="cuda")
        assert c.device.type == "cpu"
        assert next(c.stage1.model.parameters()).device.type == "cpu"


def test_checkpoints_must_fit_their_stage(tiny_checkpoints):
    with pytest.raises(CheckpointError, match="do not fit stage 1"):
        build_cascade(tiny_checkpoints[1], tiny_checkpoints[0], device="cpu")
    with pytest.raises(CheckpointError, match="no checkpoint file or registered model"):
        build_cascade("no-such-model", tiny_checkpoints[1], device="cpu")


def test_heatmaps_on_chosen_slices_only(cascade, all_slices_run):
    result, _ = all_slices_run
    chosen = [r.index for r in result.rows if r.analysable][1:3]
    heatmaps = compute_heatmaps(cascade, result, chosen)
    vols = heatmaps.volumes
    assert set(vols) == {"pe", "lung"}
    lungs = result.lungs
    for vol in vols.values():
        assert vol.shape == result.volume.shape and vol.dtype == np.float32
        others = [k for k in range(vol.shape[0]) if k not in chosen]
        assert not vol[others].any()
        for k in chosen:
            assert vol[k].max() > 0.5
            r0, r1, c0, c1 = lungs[k].box
            outside = vol[k].copy()
            outside[r0:r1, c0:c1] = 0
            assert not outside.any()  # nothing outside the crop box
    assert heatmaps.info() == {"stage": 2, "model": "stage2_pe", "target": "pe", "slices": chosen,
                               "branches": ["pe", "lung"]}
    assert heatmaps.seconds > 0 and [w["name"] for w in heatmaps.windows] == ["pe", "lung"]


def test_fast_inference_path_agrees_with_eager(cascade, all_slices_run):
    ref, _ = all_slices_run
    idx = [r.index for r in ref.rows if r.analysable][:4]
    images = prepare_slices(ref.volume, idx, cascade.config1, lungs=ref.lungs).images
    fast = build_cascade(cascade.stage1, cascade.stage2, device="cpu", batch_size=4, inference="fast")
    got = fast.runner.probabilities(fast.stage1, images)
    assert np.allclose(got, [ref.rows[k].p_disease for k in idx], atol=0.02)
    assert fast.options.inference == "fast" and fast.runner.fast_paths()["stage1"]["validation"]["n"] == 4
    with pytest.raises(ValueError, match="unknown inference path"):
        build_cascade(cascade.stage1, cascade.stage2, device="cpu", inference="onnx")


def test_slice_context_model_through_the_cascade(tiny_checkpoints, phantom_study, tmp_path):
    """A stage 1 widened to 2 slices of context each side (zero weights on the neighbours) gives
    the 2D model's probabilities through the whole cascade: channels line up with the branches."""
    from PETriageLib.models.checkpoint import load_checkpoint, save_checkpoint
    from PETriageLib.training.train import with_context

    model, meta = load_checkpoint(tiny_checkpoints[0])
    wide_path = save_checkpoint(tmp_path / "ctx2.pt", with_context(model, 2).eval(),
                                {k: meta[k] for k in ("input_size", "class_names", "threshold", "training")})
    runs = {}
    for name, stage1 in (("plain", tiny_checkpoints[0]), ("wide", wide_path)):
        c = build_cascade(stage1, tiny_checkpoints[1], device="cpu", batch_size=8, min_slices=10, all_slices=True)
        runs[name] = (c, c.run(phantom_study.volume))
    wide, result = runs["wide"]
    # stage 2 (2D) takes the centre slices of stage 1's inputs instead of preparing its own
    assert wide.config1.context == 2 and wide.stage1.model.in_channels == 10 and wide.shared_preprocessing
    p_plain = [r.p_disease for r in runs["plain"][1].rows if r.analysable]
    p_wide = [r.p_disease for r in result.rows if r.analysable]
    assert len(p_wide) == len(p_plain) > 0
    np.testing.assert_allclose(p_wide, p_plain, atol=1e-5)
    pe_plain = [r.p_pe for r in runs["plain"][1].rows if r.analysable]
    assert [r.p_pe for r in result.rows if r.analysable] == pe_plain and None not in pe_plain
    chosen = [r.index for r in result.rows if r.analysable][:2]
    vols = compute_heatmaps(wide, result, chosen, stage=1).volumes
    assert set(vols) == {"vascular", "lung"} and all(v[chosen].max() > 0 for v in vols.values())


def test_options_default_to_the_checkpoints_operating_points(tmp_path):
    from PETriageLib.triage.cascade import Cascade
    from PETriageLib.triage.options import CascadeOptions
    from PETriageLib.triage.stage_runner import StageRunner
    from PETriageLib.triage.stages import load_stage

    s1 = load_stage(1, make_checkpoint(tmp_path / "s1.pt", 1, threshold=0.3))
    s2 = load_stage(2, make_checkpoint(tmp_path / "s2.pt", 2, threshold=0.7))
    plain = Cascade(StageRunner(s1, s2, device="cpu"))
    assert (plain.options.threshold_disease, plain.options.threshold_pe) == (0.3, 0.7)
    given = Cascade(StageRunner(s1, s2, device="cpu"), CascadeOptions(threshold_pe=0.9))
    assert (given.options.threshold_disease, given.options.threshold_pe) == (0.3, 0.9)
    typed = CascadeOptions(batch_size=8.0, threshold_pe=1)
    assert (typed.batch_size, typed.threshold_pe) == (8, 1.0)
    assert isinstance(typed.batch_size, int) and isinstance(typed.threshold_pe, float)
    for bad in ("2", 2.5, 0):
        with pytest.raises(ValueError, match="min_run must be a whole number >= 1"):
            CascadeOptions(min_run=bad)
