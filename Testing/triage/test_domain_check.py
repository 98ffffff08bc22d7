"""The domain check: statistics of a model's training features, stored in its checkpoint, and the
cascade refusing (or warning about) a series unlike them. The shipped models on real CT:
test_shipped_models.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from PETriageLib.triage.cascade import build_cascade
from PETriageLib.triage.stages import load_stage
from PETriageLib.models.domain_stats import DomainModel
from PETriageLib.training.domain_fit import fit_domain_model
from PETriageLib.triage.domain import spread
from PETriageLib.models.checkpoint import file_sha256, load_checkpoint
from PETriageLib.training.domain_fit import attach_domain_model

from support.checkpoints import make_checkpoint

D = 12


def _gaussian(seed: int):
    """A correlated Gaussian: covariance eigenvalues from 25 down to 0.01, and its eigenvectors."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((D, D)))
    scales = np.sqrt(np.geomspace(25, 0.01, D))

    def draw(n: int, shift: np.ndarray | None = None) -> np.ndarray:
        x = (rng.standard_normal((n, D)) * scales) @ basis.T
        return x if shift is None else x + shift
    return draw, basis, scales


def test_threshold_comes_from_validation_and_flags_a_shift_the_covariance_makes_large() -> None:
    draw, basis, scales = _gaussian(0)
    val = [draw(40) for _ in range(8)]
    model = fit_domain_model(draw(3000), val, quantile=10, margin=1.5)
    assert model.threshold == pytest.approx(1.5 * max(np.percentile(model.distances(v), 10) for v in val))
    assert model.info["val_series"] == 8 and model.info["train_slices"] == 3000
    # squared Mahalanobis distances of new samples average the dimension (chi-square, D degrees)
    assert np.mean(model.distances(draw(4000))) == pytest.approx(D, rel=0.1)
    assert all(model.series_score(draw(40)) <= model.threshold for _ in range(20))
    # the same Euclidean shift (0.8) is nothing along the widest direction (sd 5) and far off
    # along the narrowest (sd 0.1), where the training data never varied (Ledoit-Wolf shrinkage
    # widens that direction a little: about +37 in squared distance instead of +64)
    wide, narrow = 0.8 * basis[:, 0], 0.8 * basis[:, -1]
    assert model.series_score(draw(40, wide)) <= model.threshold
    assert model.series_score(draw(40, narrow)) > 3 * model.threshold
    # a few far slices do not move a series' low percentile; most of them do
    mixed = np.concatenate([draw(36), draw(4, narrow)])
    assert model.series_score(mixed) <= model.threshold


def test_fit_refuses_what_it_cannot_use() -> None:
    draw, _, _ = _gaussian(1)
    with pytest.raises(ValueError, match="validation series"):
        fit_domain_model(draw(100), [np.zeros((0, D))])
    with pytest.raises(ValueError, match="at least 2 training slices"):
        fit_domain_model(draw(1), [draw(5)])
    with pytest.raises(ValueError, match="margin"):
        fit_domain_model(draw(100), [draw(5)], margin=0.5)
    with pytest.raises(ValueError, match="no slice features"):
        fit_domain_model(draw(100), [draw(5)]).series_score(np.zeros((0, D)))


def test_spread_picks_evenly_and_keeps_short_lists() -> None:
    assert spread(range(5), 24) == [0, 1, 2, 3, 4]
    picked = spread(list(range(100, 200)), 5)
    assert picked == [100, 125, 150, 174, 199]


def _stats_for(model, images: np.ndarray, margin: float = 1.5) -> DomainModel:
    from PETriageLib.models.domain_stats import pooled_features

    feats = pooled_features(model, images)
    return fit_domain_model(feats, [feats[:8], feats[8:]], margin=margin)


def test_checkpoint_carries_the_statistics_and_the_cascade_refuses_or_warns(tmp_path, phantom_study) -> None:
    from PETriageLib.preprocess.lungs import analyse_lungs
    from PETriageLib.preprocess.slices import prepare_slices

    s1 = make_checkpoint(tmp_path / "s1.pt", 1)
    s2 = make_checkpoint(tmp_path / "s2.pt", 2)
    plain = build_cascade(load_stage(1, s1), load_stage(2, s2), device="cpu")
    assert plain.stage1.domain is None
    result = plain.run(phantom_study.volume)
    assert result.domain is None and result.verdict.verdict != "not_analysable"

    # statistics of this very series' slices: it must pass; a copy with every HU shifted must not
    vol = phantom_study.volume
    lungs = analyse_lungs(vol)
    idx = [k for k, lung in enumerate(lungs) if lung.has_lung]
    images = prepare_slices(vol, idx, plain.config1, lungs).images
    stats = _stats_for(plain.stage1.model, images)
    sha = file_sha256(s1)
    attach_domain_model(s1, stats)
    assert file_sha256(s1) != sha
    model, meta = load_checkpoint(s1)  # still a strict, weights-only checkpoint
    assert meta["domain"]["threshold"] == pytest.approx(stats.threshold)
    stage1 = load_stage(1, s1)
    assert np.allclose(stage1.domain.precision, stats.precision, rtol=1e-5, atol=1e-6)

    checked = build_cascade(stage1, load_stage(2, s2), device="cpu")
    same = checked.run(vol)
    assert same.domain.in_domain and same.domain.slices == min(24, len(idx))
    assert same.verdict.verdict == result.verdict.verdict
    assert [r.p_disease for r in same.rows] == [r.p_disease for r in result.rows]
    assert "domain_check" in same.timings and same.to_dict()["domain_check"] == same.domain.to_dict()

    from dataclasses import replace

    odd = replace(vol, hu=(vol.hu.astype(np.int32) * 2 + 400).clip(-1024, 3071).astype(np.int16))
    refused = checked.run(odd)
    assert not refused.domain.in_domain and refused.domain.score > refused.domain.threshold
    assert refused.verdict.verdict == "not_analysable"
    assert refused.verdict.reason.startswith("the series is unlike the data model")
    assert any(r.p_disease is not None for r in refused.rows)  # kept for inspection
    warned = build_cascade(stage1, load_stage(2, s2), device="cpu", domain_check="warn").run(odd)
    assert warned.verdict.verdict != "not_analysable" and warned.verdict.reason != refused.verdict.reason
    assert refused.verdict.reason in warned.warnings
    off = build_cascade(stage1, load_stage(2, s2), device="cpu", domain_check="off").run(odd)
    assert off.domain is None and off.verdict.verdict == warned.verdict.verdict
    assert json.loads(json.dumps(refused.to_dict()))["domain_check"]["in_domain"] is False
    with pytest.raises(ValueError, match="unknown domain check"):
        build_cascade(stage1, load_stage(2, s2), device="cpu", domain_check="ignore")


def test_statistics_of_another_width_are_refused(tmp_path) -> None:
    from PETriageLib.errors import CheckpointError

    s1 = make_checkpoint(tmp_path / "s1.pt", 1)
    draw, _, _ = _gaussian(2)
    attach_domain_model(s1, fit_domain_model(draw(200), [draw(10)]))  # 12 features; the model pools more
    with pytest.raises(CheckpointError, match="describe 12 features, the model pools"):
        load_stage(1, s1)


def test_a_damaged_entry_is_refused_not_ignored(tmp_path) -> None:
    from PETriageLib.errors import CheckpointError
    from PETriageLib.models.checkpoint import read_checkpoint, write_checkpoint

    s1 = make_checkpoint(tmp_path / "s1.pt", 1)
    model, _ = load_checkpoint(s1)
    width = model.fc.in_features
    rng = np.random.default_rng(0)
    stats = fit_domain_model(rng.standard_normal((300, width)), [rng.standard_normal((10, width))])
    attach_domain_model(s1, stats)
    data = read_checkpoint(s1)
    del data["domain"]["precision"]  # as a hand-edited or truncated file might be
    write_checkpoint(tmp_path / "damaged.pt", data)  # digest matches: the entry check must catch it
    with pytest.raises(CheckpointError, match="domain check entry is incomplete or damaged"):
        load_stage(1, tmp_path / "damaged.pt")


def test_report_says_why_the_check_did_not_run(tmp_path, phantom_study) -> None:
    from dataclasses import replace

    from PETriageLib.reporting.summary import summary_markdown
    from PETriageLib.training.evaluate import _domain_md

    s1, s2 = make_checkpoint(tmp_path / "s1.pt", 1), make_checkpoint(tmp_path / "s2.pt", 2)
    plain = build_cascade(load_stage(1, s1), load_stage(2, s2), device="cpu")
    assert "Domain check: not run (the stage 1 checkpoint has no feature statistics" in summary_markdown(
        plain.run(phantom_study.volume))
    rng = np.random.default_rng(0)
    width = plain.stage1.model.fc.in_features
    attach_domain_model(s1, fit_domain_model(rng.standard_normal((300, width)), [rng.standard_normal((10, width))]))
    vol = phantom_study.volume
    short = replace(vol, hu=vol.hu[:5], z_positions=vol.z_positions[:5], instance_uids=vol.instance_uids[:5])
    checked = build_cascade(load_stage(1, s1), load_stage(2, s2), device="cpu")
    refused = checked.run(short)  # too few slices: refused before any model runs
    assert refused.verdict.verdict == "not_analysable" and refused.domain is None
    assert "Domain check: not run (no slice was analysed)" in summary_markdown(refused)
    off = build_cascade(load_stage(1, s1), load_stage(2, s2), device="cpu", domain_check="off").run(vol)
    assert "Domain check: not run (off)" in summary_markdown(off)
    ran = checked.run(vol)
    assert f"(feature distance {ran.domain.score:.0f}, limit {ran.domain.threshold:.0f}" in summary_markdown(
        ran)
    assert _domain_md({"series": 0, "refused": 0, "threshold": 1.0, "min": None, "median": None, "max": None}) \
        == "Domain check: no evaluated series has a slice with lung to score."


def test_fit_domain_will_not_rewrite_a_registered_model(tmp_path, monkeypatch) -> None:
    from PETriageLib.training.domain_fit import fit_checkpoint_domain

    monkeypatch.setenv("PETRIAGE_RESOURCES", str(tmp_path))  # a scratch Resources/
    registered = make_checkpoint(tmp_path / "models" / "s1.pt", 1)
    with pytest.raises(ValueError, match="registered model: rewriting it would change the SHA256"):
        fit_checkpoint_domain(registered, tmp_path / "manifest.csv", tmp_path / "splits.json", tmp_path / "cache")
