"""The cascade's batch loop with the next batch prepared in a background thread: the same numbers
as preparing each batch in the loop, the producer's errors and the cancel reach the caller, no
thread is left behind, and the domain check scores the inputs the loop kept (not prepared again)."""
from __future__ import annotations

import threading

import pytest
from support.checkpoints import make_checkpoint

from PETriageLib.models.domain_stats import pooled_features
from PETriageLib.preprocess.lungs import analyse_lungs
from PETriageLib.preprocess.slices import prepare_slices
from PETriageLib.progress import Cancelled
from PETriageLib.training.domain_fit import attach_domain_model, fit_domain_model
from PETriageLib.triage import cascade as cascade_module
from PETriageLib.triage.cascade import build_cascade
from PETriageLib.triage.domain import spread
from PETriageLib.triage.stages import load_stage


def _producers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("petriage-ahead")]


@pytest.fixture(scope="module")
def checked(tmp_path_factory, phantom_study):
    """A cascade whose stage 1 carries domain statistics of this series (batch 4: several batches)."""
    d = tmp_path_factory.mktemp("bg")
    s1, s2 = make_checkpoint(d / "s1.pt", 1), make_checkpoint(d / "s2.pt", 2)
    plain = build_cascade(s1, s2, device="cpu")
    vol = phantom_study.volume
    lungs = analyse_lungs(vol)
    idx = [k for k, lung in enumerate(lungs) if lung.has_lung]
    feats = pooled_features(plain.stage1.model, prepare_slices(vol, idx, plain.config1, lungs).images)
    attach_domain_model(s1, fit_domain_model(feats, [feats[:4], feats[4:]], margin=1.5))
    return build_cascade(load_stage(1, s1), load_stage(2, s2), device="cpu", batch_size=4, all_slices=True)


def test_background_batches_give_the_synchronous_numbers(checked, phantom_study):
    vol = phantom_study.volume
    result = checked.run(vol)
    lungs = analyse_lungs(vol)
    todo = [k for k, lung in enumerate(lungs) if lung.has_lung]
    runner = checked.runner
    p1, p2 = {}, {}
    for start in range(0, len(todo), 4):  # the loop without a background thread, by hand
        idx = todo[start:start + 4]
        images = prepare_slices(vol, idx, checked.config1, lungs=lungs).images
        p1.update(zip(idx, runner.probabilities(checked.stage1, images)))
        p2.update(zip(idx, runner.probabilities(checked.stage2, images)))
    analysed = [r for r in result.rows if r.analysable]
    assert [r.index for r in analysed] == todo and len(todo) > 8
    assert [r.p_disease for r in analysed] == [float(p1[k]) for k in todo]
    assert [r.p_pe for r in analysed] == [float(p2[k]) for k in todo]
    assert result.timings["preprocessing_ahead"] > 0 and not _producers()

    # the domain check: the kept inputs score as the slices prepared again would
    idx = spread(todo)
    feats = runner.pooled(checked.stage1, prepare_slices(vol, idx, checked.config1, lungs=lungs).images)
    assert result.domain.slices == len(idx)
    assert result.domain.score == pytest.approx(checked.stage1.domain.series_score(feats), rel=1e-6)


def test_an_error_while_preparing_ahead_reaches_the_caller(checked, phantom_study, monkeypatch):
    calls = []
    real = cascade_module.prepare_slices

    def failing_on_the_third_batch(*args, **kwargs):  # a fault injected into the real function
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("no memory for batch 3")
        return real(*args, **kwargs)

    monkeypatch.setattr(cascade_module, "prepare_slices", failing_on_the_third_batch)
    with pytest.raises(MemoryError, match="no memory for batch 3"):
        checked.run(phantom_study.volume)
    assert len(calls) == 3 and not _producers()


def test_cancel_stops_the_loop_and_its_producer(checked, phantom_study):
    seen = []
    with pytest.raises(Cancelled, match="triage cancelled after 8 of"):
        checked.run(phantom_study.volume, progress=lambda d, n, m: seen.append(d) if m != "lungs" else None,
                    cancel=lambda: len(seen) >= 3)
    assert seen == [0, 4, 8] and not _producers()
