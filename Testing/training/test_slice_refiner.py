"""The slice refiner: a BiLSTM over slice features re-scores each slice for both stages; through
training, its file, evaluation, the cascade and the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from PETriageLib.errors import CheckpointError
from PETriageLib.models.series_checkpoint import load_slice_refiner
from PETriageLib.training.series_models.refiner import (
    RefinerTrainConfig, refine_series, save_slice_refiner, stage_scores, train_slice_refiner)
from PETriageLib.training.series_models.feature_series import PatientSeries

FAST = dict(hidden=16, epochs=30, batch_size=16, lr=1e-2, noise=0.0, dropout=0.0, patience=30)


def _lesion_runs(n: int, seed: int, length: int = 30) -> list[PatientSeries]:
    """Each series has a lesion through five adjacent slices (PE in half the series, other disease
    in the rest); only the middle slice's features show it (feature 0: diseased, feature 1: PE).
    Slice by slice, four of the five lesion slices look healthy; their neighbours tell."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.normal(0, 0.3, (length, 2)).astype(np.float32)
        labels = ["wnl"] * length
        kind = "pe" if i % 2 == 0 else "other"
        start = int(rng.integers(0, length - 5))
        x[start + 2, 0] += 4.0
        x[start + 2, 1] += 4.0 if kind == "pe" else -4.0
        labels[start:start + 5] = [kind] * 5
        out.append(PatientSeries(f"R{seed}-{i}", kind, x, labels))
    return out


@pytest.fixture(scope="module")
def lesion_data():
    return _lesion_runs(120, 1), _lesion_runs(40, 2)


def test_refiner_scores_slices_from_their_neighbours(lesion_data):
    train, val = lesion_data
    raw = [1 / (1 + np.exp(-s.features)) for s in val]  # the features' own scores, slice by slice
    y1, p1_raw, y2, p2_raw = stage_scores(val, raw)
    model, best, history = train_slice_refiner(train, val, RefinerTrainConfig(**FAST))
    _, p1, _, p2 = stage_scores(val, refine_series(model, val))
    assert roc_auc_score(y1, p1_raw) < 0.7 and roc_auc_score(y2, p2_raw) < 0.8
    assert roc_auc_score(y1, p1) > 0.95 and roc_auc_score(y2, p2) > 0.95
    # the thresholds keep 95% of the diseased and 98% of the PE slices of validation
    assert (p1[y1 == 1] >= best["threshold_disease"]).mean() >= 0.95
    assert (p2[y2 == 1] >= best["threshold_pe"]).mean() >= 0.98
    assert best["val_acc_stage1"] == pytest.approx(((p1 >= best["threshold_disease"]) == y1).mean())
    assert len(history) >= best["epoch"]


def test_refiner_file_round_trip_and_refusals(lesion_data, tmp_path):
    from PETriageLib.models.series_nets import PatientClassifier
    from PETriageLib.training.series_models.patient import PatientTrainConfig, save_patient_classifier

    train, val = lesion_data
    cfg = RefinerTrainConfig(**dict(FAST, epochs=2))
    model, best, _ = train_slice_refiner(train, val, cfg)
    stages = [{"sha256": "a" * 64, "path": "s1.pt"}, {"sha256": "b" * 64, "path": "s2.pt"}]
    path = save_slice_refiner(tmp_path / "refiner.pt", model, cfg, best, stages)
    loaded, meta = load_slice_refiner(path, ["a" * 64, "b" * 64])
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(refine_series(loaded, val), refine_series(model, val)))
    assert meta["threshold_disease"] == best["threshold_disease"] and meta["features"] == "scores"
    with pytest.raises(CheckpointError, match="other stage models"):
        load_slice_refiner(path, ["a" * 64, "c" * 64])
    classifier = save_patient_classifier(tmp_path / "patient.pt", PatientClassifier(2, "maxpool", 4),
                                         PatientTrainConfig(features="scores"), {"threshold": 0.5}, stages)
    with pytest.raises(CheckpointError, match="not a PETriage slice refiner"):
        load_slice_refiner(classifier)


def test_registered_refiner_loads_by_name_with_its_sha256(lesion_data, tmp_path, monkeypatch):
    train, val = lesion_data
    cfg = RefinerTrainConfig(**dict(FAST, epochs=1))
    model, best, _ = train_slice_refiner(train, val, cfg)
    resources = tmp_path / "Resources"
    path = save_slice_refiner(resources / "models" / "r.pt", model, cfg, best, [{"sha256": "a" * 64, "path": "s"}] * 2)
    from PETriageLib.models.checkpoint import file_sha256
    from PETriageLib.models.zoo import verify_manifest

    entry = {"name": "my_refiner", "type": "slice_refiner", "file": "models/r.pt", "sha256": file_sha256(path),
             "card": {}}
    (resources / "models.json").write_text(json.dumps({"models": [], "series_models": [entry]}))
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(resources))
    loaded, meta = load_slice_refiner("my_refiner")
    assert meta["threshold_pe"] == best["threshold_pe"] and verify_manifest() == []
    with pytest.raises(CheckpointError, match="no checkpoint file or registered series model named 'other'"):
        load_slice_refiner("other")
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(CheckpointError, match="does not match its registered SHA256"):
        load_slice_refiner("my_refiner")
    assert "does not match its SHA256" in verify_manifest()[0]


def test_training_needs_every_slice_label(lesion_data):
    train, val = lesion_data
    only_pe = [s for s in val if s.patient_label == "pe"]
    with pytest.raises(ValueError, match="validation split needs WNL, PE and other-disease slices"):
        train_slice_refiner(train, only_pe, RefinerTrainConfig(**FAST))


@pytest.fixture(scope="module")
def trained_refiner(phantom_run):
    from PETriageLib.training.series_models.from_manifest import train_refiner_from_manifest

    r = phantom_run
    res = train_refiner_from_manifest(str(r["s1"]), str(r["s2"]), r["manifest"], r["out"] / "refiner",
                                      r["out"] / "cache", r["splits"], RefinerTrainConfig(**dict(FAST, epochs=4)))
    return res


def test_evaluation_scores_the_refined_slices(phantom_run, trained_refiner):
    from PETriageLib.training.evaluate import evaluate_cascade

    r = phantom_run
    plain = evaluate_cascade(r["s1"], r["s2"], r["manifest"], r["out"] / "eval-plain", r["out"] / "cache",
                             r["splits"], "test", n_boot=20)
    refined = evaluate_cascade(r["s1"], r["s2"], r["manifest"], r["out"] / "eval-refined", r["out"] / "cache",
                               r["splits"], "test", n_boot=20, refiner=trained_refiner["path"])
    assert refined["refiner"] == trained_refiner["path"]
    assert refined["stage1"]["n"] == plain["stage1"]["n"] and refined["stage2"]["n"] == plain["stage2"]["n"]
    assert refined["stage1"]["threshold"] == pytest.approx(trained_refiner["threshold_disease"])
    assert refined["stage2"]["threshold"] == pytest.approx(trained_refiner["threshold_pe"])
    assert "slice refiner" in (r["out"] / "eval-refined" / "report.md").read_text()


def test_cascade_with_the_refiner(phantom_run, trained_refiner):
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.triage.stages import load_stage
    from PETriageLib.training.series_models.from_manifest import split_series
    from PETriageLib.training.loaders import load_source

    r = phantom_run
    patient = r["ids"]["test"][0]
    volume, _ = load_source(r["sources"][patient])
    cascade = build_cascade(r["s1"], r["s2"], device="cpu", batch_size=8, refiner=trained_refiner["path"])
    assert cascade.options.threshold_disease == trained_refiner["threshold_disease"]
    result = cascade.run(volume)
    done = [row for row in result.rows if row.analysable]
    # The training path's features of the same patient (cached float16 slices) give the same scores.
    stages = [load_stage(1, r["s1"]), load_stage(2, r["s2"])]
    series = [s for s in split_series(stages, r["manifest"], r["out"] / "cache", r["splits"], "test", "scores")
              if s.patient_id == patient]
    model, _ = load_slice_refiner(trained_refiner["path"])
    expected = refine_series(model, series)[0]
    assert np.allclose([row.p_disease for row in done], expected[:, 0], atol=1e-2)
    for row, q in zip(done, expected):
        if row.p_pe is not None:
            assert row.p_disease >= cascade.options.threshold_disease and row.p_pe == pytest.approx(q[1], abs=1e-2)
    assert result.run.refiner == trained_refiner["path"]
    # logits through the fast path (the default) or the eager models: the same refined scores
    eager = build_cascade(r["s1"], r["s2"], device="cpu", batch_size=8, inference="eager",
                                     refiner=trained_refiner["path"]).run(volume)
    assert np.allclose([row.p_disease for row in eager.rows if row.analysable], expected[:, 0], atol=1e-4)
    assert (result.verdict.verdict == "pe_suspected") == any(row.label == "pe" for row in done)


def test_refiner_and_patient_classifier_must_read_the_same_features(phantom_run, trained_refiner, tmp_path):
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.models.checkpoint import file_sha256
    from PETriageLib.models.series_nets import PatientClassifier
    from PETriageLib.training.series_models.patient import PatientTrainConfig, save_patient_classifier

    r = phantom_run
    stages = [{"sha256": file_sha256(p), "path": str(p)} for p in (r["s1"], r["s2"])]
    emb = save_patient_classifier(tmp_path / "p.pt", PatientClassifier(10, "maxpool", 4),
                                  PatientTrainConfig(features="embeddings"), {"threshold": 0.5}, stages)
    with pytest.raises(ValueError, match="read different features"):
        build_cascade(r["s1"], r["s2"], device="cpu", refiner=trained_refiner["path"], patient_model=emb)


def test_cli_train_refiner(phantom_run, capsys):
    from PETriageLib.cli import main

    r = phantom_run
    out = r["out"] / "cli-refiner"
    assert main(["train-refiner", "--manifest", str(r["manifest"]), "--stage1", str(r["s1"]), "--stage2",
                 str(r["s2"]), "--splits", str(r["splits"]), "--cache", str(r["out"] / "cache"), "--out", str(out),
                 "--epochs", "2", "--target-sensitivity", "0.9", "0.97", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(out / "refiner.pt")
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["target_sensitivity"] == [0.9, 0.97] and len(history["history"]) == 2
