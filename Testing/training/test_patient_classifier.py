"""Patient-level classifiers (maxpool, BiLSTM) over slice features: what each can learn, the
stored operating point, the checkpoint, training from a manifest, evaluation and the cascade."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from PETriageLib.errors import CheckpointError
from PETriageLib.models.series_nets import PatientClassifier, pad_batch
from PETriageLib.training.series_models.feature_series import PatientSeries, load_feature_series, save_feature_series
from PETriageLib.models.series_checkpoint import load_patient_classifier
from PETriageLib.training.series_models.patient import (
    PatientTrainConfig, predict_series, save_patient_classifier, train_patient_classifier)
from support.checkpoints import make_checkpoint

FAST = dict(hidden=16, epochs=40, batch_size=16, lr=1e-2, noise=0.0, dropout=0.0, patience=40)


def _runs_series(n: int, seed: int, length: int = 20) -> list[PatientSeries]:
    """Every series has three slices with a high score; PE series have them adjacent, the others
    spread out. Slice by slice the two kinds look the same; only the order tells them apart."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.normal(0, 0.3, (length, 2)).astype(np.float32)
        pe = i % 2 == 0
        start = int(rng.integers(1, length - 4))
        hits = [start, start + 1, start + 2] if pe else [1, length // 2, length - 2]
        x[hits, 0] += 4.0
        out.append(PatientSeries(f"P{seed}-{i}", "pe" if pe else "wnl", x, ["wnl"] * length))
    return out


@pytest.fixture(scope="module")
def run_data():
    return _runs_series(120, 1), _runs_series(40, 2)


def test_bilstm_learns_the_slice_order_maxpool_cannot(run_data):
    from sklearn.metrics import roc_auc_score

    train, val = run_data
    y = [s.is_pe for s in val]
    bilstm, best, history = train_patient_classifier(train, val, PatientTrainConfig(head="bilstm", **FAST))
    maxpool, best_mp, _ = train_patient_classifier(train, val, PatientTrainConfig(head="maxpool", **FAST))
    assert roc_auc_score(y, predict_series(bilstm, val)) >= 0.95
    # Max pooling of per-slice scores sees three high slices either way: no better than chance.
    assert roc_auc_score(y, predict_series(maxpool, val)) <= 0.75
    assert best["val_auroc"] == pytest.approx(max(h["val_auroc"] for h in history))
    # The threshold keeps every validation PE patient (target sensitivity 1.0).
    p = predict_series(bilstm, val)
    assert best["threshold"] == pytest.approx(p[np.array(y) == 1].min())
    assert best["val_sensitivity"] == 1.0
    assert best["val_specificity"] == pytest.approx(float((p[np.array(y) == 0] < best["threshold"]).mean()))


def test_ensemble_averages_its_members_and_round_trips(run_data, tmp_path):
    from PETriageLib.models.series_nets import PatientEnsemble

    train, val = run_data
    cfg = PatientTrainConfig(head="ensemble", **dict(FAST, epochs=6))
    model, best, history = train_patient_classifier(train, val, cfg)
    assert isinstance(model, PatientEnsemble) and [m.head for m in model.members] == ["maxpool", "bilstm"]
    assert {h["head"] for h in history} == {"maxpool", "bilstm"} and set(best["members"]) == {"maxpool", "bilstm"}
    members = np.mean([predict_series(m, val) for m in model.members], axis=0)
    assert np.allclose(predict_series(model, val), members, atol=1e-5)
    path = save_patient_classifier(tmp_path / "ens.pt", model, cfg, best, [{"sha256": "a" * 64, "path": "s"}] * 2)
    loaded, meta = load_patient_classifier(path)
    assert meta["head"] == "ensemble" and np.allclose(predict_series(loaded, val), members, atol=1e-5)


def test_maxpool_finds_a_single_positive_slice():
    """The paper's rule, learned: a patient is positive when one slice is."""
    def make(n, seed):
        rng = np.random.default_rng(seed)
        out = []
        for i in range(n):
            x = rng.normal(0, 0.3, (int(rng.integers(12, 30)), 3)).astype(np.float32)
            if i % 2 == 0:
                x[int(rng.integers(0, len(x))), 1] += 3.0
            out.append(PatientSeries(f"S{seed}-{i}", "pe" if i % 2 == 0 else "other", x, ["other"] * len(x)))
        return out

    train, val = make(100, 3), make(40, 4)
    model, best, _ = train_patient_classifier(train, val, PatientTrainConfig(head="maxpool", **FAST))
    assert best["val_auroc"] >= 0.95


def test_padding_does_not_change_a_prediction():
    torch.manual_seed(0)
    for head in ("maxpool", "bilstm"):
        model = PatientClassifier(3, head, hidden=8).eval()
        short, long = torch.randn(5, 3), torch.randn(11, 3)
        alone = model(*pad_batch([short]))
        together = model(*pad_batch([short, long]))
        assert torch.allclose(alone[0], together[0], atol=1e-6)
    with pytest.raises(ValueError, match="without slices"):
        pad_batch([torch.zeros(0, 3)])


def test_training_refuses_splits_without_both_classes_or_shared_patients(run_data):
    train, val = run_data
    with pytest.raises(ValueError, match="validation split needs PE and non-PE"):
        train_patient_classifier(train, [s for s in val if s.is_pe], PatientTrainConfig(**FAST))
    with pytest.raises(ValueError, match="in both training and validation"):
        train_patient_classifier(train, val + train[:1], PatientTrainConfig(**FAST))


def test_checkpoint_round_trip_and_refusals(run_data, tmp_path):
    train, val = run_data
    cfg = PatientTrainConfig(head="bilstm", **dict(FAST, epochs=3))
    model, best, _ = train_patient_classifier(train, val, cfg)
    stages = [{"sha256": "a" * 64, "path": "s1.pt"}, {"sha256": "b" * 64, "path": "s2.pt"}]
    path = save_patient_classifier(tmp_path / "patient.pt", model, cfg, best, stages)
    loaded, meta = load_patient_classifier(path, ["a" * 64, "b" * 64])
    assert np.allclose(predict_series(loaded, val), predict_series(model, val), atol=1e-6)
    assert meta["threshold"] == best["threshold"] and meta["head"] == "bilstm" and meta["in_features"] == 2
    with pytest.raises(CheckpointError, match="other stage models"):
        load_patient_classifier(path, ["a" * 64, "c" * 64])
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(CheckpointError, match="not a PETriage patient classifier"):
        load_patient_classifier(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_patient_classifier(tmp_path / "missing.pt")


def test_feature_kinds_share_their_columns_and_the_logit_is_the_models(tmp_path):
    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.models.features import stage_feature_size, stage_features

    model, _ = load_checkpoint(make_checkpoint(tmp_path / "s1.pt", 1))
    x = np.random.default_rng(0).normal(0, 0.5, (5, 2, 64, 64)).astype(np.float32)
    feats = {k: stage_features(model, x, k, batch_size=2) for k in ("scores", "embeddings", "multiscale")}
    for kind, f in feats.items():
        assert f.shape == (5, stage_feature_size(model, kind))
    with torch.no_grad():
        logit = model(torch.from_numpy(x)).reshape(-1).numpy()
    assert np.allclose(feats["scores"][:, 0], logit, atol=1e-5)
    width = feats["embeddings"].shape[1]
    assert width == 1 + model.fc.in_features
    assert np.allclose(feats["multiscale"][:, :width], feats["embeddings"], atol=1e-5)
    # layers 4-6 of two branches (width 0.25: 32, 64, 128 channels), average and maximum each
    assert feats["multiscale"].shape[1] - width == 2 * 2 * (32 + 64 + 128)
    with pytest.raises(ValueError, match="feature kind"):
        stage_features(model, x, "pixels")


def test_series_file_round_trip(run_data, tmp_path):
    train, _ = run_data
    save_feature_series(train[:3], tmp_path / "f.npz")
    back = load_feature_series(tmp_path / "f.npz")
    assert [s.patient_id for s in back] == [s.patient_id for s in train[:3]]
    assert all(np.array_equal(a.features, b.features) and a.patient_label == b.patient_label
               for a, b in zip(back, train[:3]))


def test_train_from_manifest_caches_features_and_evaluates(phantom_run, caplog):
    from PETriageLib.training.series_models.from_manifest import train_patient_from_manifest
    from PETriageLib.training.evaluate import evaluate_cascade

    r = phantom_run
    cfg = PatientTrainConfig(head="maxpool", features="embeddings", **dict(FAST, epochs=5))
    res = train_patient_from_manifest(str(r["s1"]), str(r["s2"]), r["manifest"], r["out"] / "pc",
                                      r["out"] / "cache", r["splits"], cfg)
    feature_files = sorted((r["out"] / "pc" / "features").glob("*.npz"))
    assert [f.name.split("-")[0] for f in feature_files] == ["train", "val"]
    train_series = load_feature_series(feature_files[0])
    assert sorted(s.patient_id for s in train_series) == sorted(r["ids"]["train"])
    # logits and pooled avg+max features of two branches, for each stage
    model, _ = load_patient_classifier(res["path"])
    assert train_series[0].features.shape[1] == model.in_features > 2
    os.utime(feature_files[0], (1e9, 1e9))  # long unused, as `petriage cache prune` sees it
    with caplog.at_level("INFO", logger="PETriageLib.training.series_models.from_manifest"):
        again = train_patient_from_manifest(str(r["s1"]), str(r["s2"]), r["manifest"], r["out"] / "pc",
                                            r["out"] / "cache", r["splits"], cfg)
    assert "features of split train from" in caplog.text
    assert again["threshold"] == res["threshold"]
    assert feature_files[0].stat().st_mtime > 1e9 + 86400  # reading them marked them used

    rep = evaluate_cascade(r["s1"], r["s2"], r["manifest"], r["out"] / "eval", r["out"] / "cache", r["splits"],
                           "test", n_boot=20, patient_model=res["path"])
    pc = rep["patient_classifier"]
    assert sorted(p["patient_id"] for p in pc["patients"]) == sorted(r["ids"]["test"])
    n_pe = sum(p["label"] == "pe" for p in pc["patients"])
    flagged_pe = sum(p["p_pe"] >= res["threshold"] for p in pc["patients"] if p["label"] == "pe")
    assert pc["sensitivity"].endswith(f"({flagged_pe}/{n_pe})")
    md = (r["out"] / "eval" / "report.md").read_text()
    assert "## PE per patient, patient classifier (maxpool over embeddings" in md


def test_feature_files_are_named_by_what_they_depend_on(phantom_run, tmp_path):
    from PETriageLib.triage.stages import load_stage
    from PETriageLib.training.series_models.from_manifest import features_path

    r = phantom_run
    stages = [load_stage(1, r["s1"]), load_stage(2, r["s2"])]
    name = features_path(stages, r["manifest"], r["splits"], "train", "scores", tmp_path)
    assert name == features_path(stages, r["manifest"], r["splits"], "train", "scores", tmp_path)
    assert name != features_path(stages, r["manifest"], r["splits"], "train", "embeddings", tmp_path)
    assert name != features_path(stages[::-1], r["manifest"], r["splits"], "train", "scores", tmp_path)
    val_name = features_path(stages, r["manifest"], r["splits"], "val", "scores", tmp_path)
    labels = r["sources"][r["ids"]["train"][0]].labels_csv
    before = os.stat(labels)
    try:  # a train patient's labels file changed (here: its time): new features, never stale labels
        os.utime(labels, (before.st_atime, before.st_mtime + 10))
        assert name != features_path(stages, r["manifest"], r["splits"], "train", "scores", tmp_path)
        # the validation patients' features do not depend on that file
        assert val_name == features_path(stages, r["manifest"], r["splits"], "val", "scores", tmp_path)
    finally:
        os.utime(labels, (before.st_atime, before.st_mtime))


def test_cascade_verdict_follows_the_patient_classifier(phantom_run):
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.training.series_models.from_manifest import train_patient_from_manifest
    from PETriageLib.training.loaders import load_source

    r = phantom_run
    cfg = PatientTrainConfig(head="bilstm", features="scores", **dict(FAST, epochs=5))
    res = train_patient_from_manifest(str(r["s1"]), str(r["s2"]), r["manifest"], r["out"] / "pc-scores",
                                      r["out"] / "cache", r["splits"], cfg)
    patient = r["ids"]["test"][0]
    volume, _ = load_source(r["sources"][patient])
    cascade = build_cascade(r["s1"], r["s2"], device="cpu", batch_size=8, patient_model=res["path"])
    result = cascade.run(volume)
    v = result.verdict
    assert v.rule == "patient classifier" and v.patient_threshold == res["threshold"]
    assert (v.verdict == "pe_suspected") == (v.patient_probability >= res["threshold"])
    # Stage 2 ran on every slice for the classifier, yet the rows keep the cascade's meaning.
    for row in result.rows:
        if row.analysable:
            assert (row.p_pe is not None) == (row.p_disease >= cascade.options.threshold_disease)
    # The same patient through the training path (cached float16 slices): the same probability.
    from PETriageLib.triage.stages import load_stage
    from PETriageLib.training.series_models.from_manifest import split_series

    stages = [load_stage(1, r["s1"]), load_stage(2, r["s2"])]
    series = [s for s in split_series(stages, r["manifest"], r["out"] / "cache", r["splits"], "test", "scores")
              if s.patient_id == patient]
    model, _ = load_patient_classifier(res["path"])
    assert float(predict_series(model, series)[0]) == pytest.approx(v.patient_probability, abs=1e-2)
    with pytest.raises(CheckpointError, match="other stage models"):
        build_cascade(r["s1"], make_checkpoint(r["out"] / "other2.pt", 2, seed=5), device="cpu",
                                 patient_model=res["path"])


def test_cli_train_patient(phantom_run, capsys, caplog):
    from PETriageLib.cli import main

    r = phantom_run
    out = r["out"] / "cli"

    def args(splits, dest):
        return ["train-patient", "--manifest", str(r["manifest"]), "--stage1", str(r["s1"]), "--stage2", str(r["s2"]),
                "--splits", str(splits), "--cache", str(r["out"] / "cache"), "--out", str(dest), "--head", "maxpool",
                "--features", "scores", "--epochs", "3", "--no-progress"]

    assert main(args(r["splits"], out)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert Path(printed["path"]) == out / "patient.pt" and (out / "history.json").is_file()
    assert len(json.loads((out / "history.json").read_text())["history"]) == 3
    assert main(args(out / "nope.json", out / "x")) == 1
    assert "nope.json not found" in caplog.text


def test_score_head_is_the_cascade_score_with_a_validation_threshold(tmp_path):
    """Nothing trained: p = max over real slices of sigmoid(l1) x sigmoid(l2); padding ignored;
    threshold for 100% sensitivity on validation; the file round-trips."""
    from PETriageLib.models.series_nets import CascadeScore

    rng = np.random.default_rng(4)
    val = [PatientSeries(f"V{i}", "pe" if i % 2 else "wnl", rng.normal(0, 2, (int(rng.integers(5, 30)), 2))
                         .astype(np.float32), []) for i in range(12)]
    model, best, history = train_patient_classifier([], val, PatientTrainConfig(head="score", features="scores"))
    assert isinstance(model, CascadeScore) and history == [] and not list(model.parameters())
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = np.array([(sig(s.features[:, 0]) * sig(s.features[:, 1])).max() for s in val])
    p = predict_series(model, val, batch_size=5)  # batches mix lengths: padding must not count
    assert np.allclose(p, expected, atol=1e-5)
    y = np.array([s.is_pe for s in val])
    assert best["threshold"] == pytest.approx(expected[y == 1].min(), abs=1e-5) and best["val_sensitivity"] == 1.0
    assert best["val_specificity"] == pytest.approx(float((expected[y == 0] < best["threshold"]).mean()))
    path = save_patient_classifier(tmp_path / "score.pt", model, PatientTrainConfig(head="score", features="scores"),
                                   best, [{"sha256": "a" * 64, "path": "s"}] * 2)
    loaded, meta = load_patient_classifier(path)
    assert meta["head"] == "score" and np.allclose(predict_series(loaded, val), p)
    with pytest.raises(ValueError, match="features 'scores'"):
        PatientTrainConfig(head="score", features="embeddings")
    with pytest.raises(ValueError, match="PE and non-PE"):
        train_patient_classifier([], val[1::2], PatientTrainConfig(head="score", features="scores"))


def test_score_head_from_the_cli_reads_only_validation_and_matches_the_evaluation(phantom_run, capsys):
    from PETriageLib.cli import main
    from PETriageLib.training.evaluate import evaluate_cascade

    r = phantom_run
    out = r["out"] / "score"
    assert main(["train-patient", "--manifest", str(r["manifest"]), "--stage1", str(r["s1"]), "--stage2", str(r["s2"]),
                 "--splits", str(r["splits"]), "--cache", str(r["out"] / "cache"), "--out", str(out),
                 "--head", "score", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["head"] == "score" and printed["train_patients"] == 0
    assert [f.name.split("-")[:2] for f in (out / "features").glob("*.npz")] == [["val", "scores"]]
    rep = evaluate_cascade(r["s1"], r["s2"], r["manifest"], r["out"] / "eval-score", r["out"] / "cache", r["splits"],
                           "test", n_boot=20, patient_model=printed["path"])
    score = {p["patient_id"]: p["max_pe_prob"] for p in rep["patients"]}
    classified = {p["patient_id"]: p["p_pe"] for p in rep["patient_classifier"]["patients"]}
    assert set(classified) == set(score) == set(r["ids"]["test"])
    for patient, p in classified.items():  # the same score as the evaluation's own patient ranking
        assert p == pytest.approx(score[patient], abs=1e-4)


def test_cascade_verdict_with_the_score_head_is_its_own_best_slice(phantom_run):
    """Triage with the score head: p(PE) of the patient is the highest p(disease) x p(PE) among the
    rows (stage 2 on every lung slice), and the verdict follows its validation threshold."""
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.training.series_models.from_manifest import train_patient_from_manifest
    from PETriageLib.training.loaders import load_source

    r = phantom_run
    cfg = PatientTrainConfig(head="score", features="scores")
    res = train_patient_from_manifest(str(r["s1"]), str(r["s2"]), r["manifest"], r["out"] / "score-cascade",
                                      r["out"] / "cache", r["splits"], cfg)
    for patient in r["ids"]["test"][:2]:
        volume, _ = load_source(r["sources"][patient])
        cascade = build_cascade(r["s1"], r["s2"], device="cpu", batch_size=8, all_slices=True,
                                           patient_model=res["path"])
        result = cascade.run(volume)
        v = result.verdict
        rows = [row for row in result.rows if row.analysable and row.p_pe is not None]
        assert v.rule == "patient classifier" and rows
        assert v.patient_probability == pytest.approx(max(row.p_disease * row.p_pe for row in rows), abs=2e-3)
        assert (v.verdict == "pe_suspected") == (v.patient_probability >= res["threshold"])
