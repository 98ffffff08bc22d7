"""Patient rules: the search for the most specific rule at a sensitivity target, its agreement with
triage's own verdict, the slices.csv it reads, and the manifest section that binds it to a pair."""
from __future__ import annotations

import json

import numpy as np
import pytest

from PETriageLib.errors import CheckpointError
from PETriageLib.models.patient_rules import PatientRule, read_patient_rules, register_patient_rule, rule_for_pair
from PETriageLib.training.cache import CachedSource
from PETriageLib.training.evaluate import write_slice_csv
from PETriageLib.training.patient_rule import (SeriesProbabilities, choose_patient_rule, read_slice_csv,
                                               rule_table, score_rule)
from PETriageLib.triage.verdict import SliceRow, label_slice, patient_verdict


def series(pid: str, has_pe: bool, p_pe: list[float], p_disease: float = 0.9) -> SeriesProbabilities:
    n = len(p_pe)
    return SeriesProbabilities(pid, has_pe, np.full(n, p_disease), np.array(p_pe, float), np.ones(n, bool))


def test_isolated_noisy_slices_are_ruled_out_by_a_run_of_two() -> None:
    # PE series carry a run of 3 slices at p(PE) 0.8; non-PE series one stray slice at 0.95.
    pe = [series(f"pe{i}", True, [0.1] * 5 + [0.8] * 3 + [0.1] * 5) for i in range(10)]
    rest = [series(f"n{i}", False, [0.1] * 6 + [0.95] + [0.1] * 6) for i in range(10)]
    chosen = choose_patient_rule(pe + rest, 0.95)
    assert chosen.rule.min_run == 2  # the shortest run that keeps the strays out
    assert (chosen.true_positive, chosen.positives, chosen.true_negative, chosen.negatives) == (10, 10, 10, 10)
    assert chosen.rule.threshold_pe <= 0.8
    # the same series at any-slice with a low threshold: every patient flagged
    loose = score_rule(pe + rest, PatientRule(0.5, 0.05, 1))
    assert (loose.sensitivity, loose.specificity) == (1.0, 0.0)
    table = rule_table([("val", chosen)])
    assert "100.0% (72-100; 10/10)" in table and "2 consecutive slices" in table


def test_the_target_trades_sensitivity_for_specificity() -> None:
    # PE series' best slice spread 0.50-0.95; non-PE series' best slice 0.30-0.75: a lower target
    # allows a higher threshold and so keeps more non-PE patients.
    pe = [series(f"pe{i}", True, [0.0, 0.5 + 0.05 * i, 0.0]) for i in range(10)]
    rest = [series(f"n{i}", False, [0.0, 0.3 + 0.05 * i, 0.0]) for i in range(10)]
    strict, lax = choose_patient_rule(pe + rest, 1.0), choose_patient_rule(pe + rest, 0.8)
    assert strict.sensitivity == 1.0 and lax.sensitivity >= 0.8
    assert lax.specificity > strict.specificity
    assert strict.rule.threshold_pe <= 0.5 < lax.rule.threshold_pe


def test_rule_flags_exactly_what_triage_flags() -> None:
    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(3, 25))
        s = SeriesProbabilities("p", True, rng.random(n), rng.random(n), rng.random(n) > 0.2)
        rule = PatientRule(float(rng.choice([0.2, 0.5, 0.8])), float(rng.choice([0.1, 0.5, 0.9])),
                           int(rng.integers(1, 4)))
        rows = []
        for k in range(n):
            lung = bool(s.has_lung[k])
            p1, p2 = (float(s.p_disease[k]), float(s.p_pe[k])) if lung else (None, None)
            rows.append(SliceRow(k, float(k), f"1.2.{k}", lung, lung, p1, p2,
                                 label_slice(p1, p2, rule.threshold_disease, rule.threshold_pe)))
        if not any(s.has_lung):
            continue
        verdict = patient_verdict(rows, rule.threshold_disease, rule.threshold_pe, rule.min_run)
        assert s.flagged(rule) == (verdict.verdict == "pe_suspected"), (trial, rule)


def test_refuses_what_it_cannot_choose_on() -> None:
    only_pe = [series("a", True, [0.9, 0.9])]
    with pytest.raises(ValueError, match="needs PE and non-PE series; these have 1 with PE and 0 without"):
        choose_patient_rule(only_pe)
    silent = [series("a", True, [0.0, 0.0]), series("b", True, [0.9]), series("c", False, [0.2])]
    with pytest.raises(ValueError, match="no rule reaches a patient sensitivity of 95%"):
        choose_patient_rule(silent, 0.95)


def test_slices_csv_keeps_two_series_of_one_patient_apart(tmp_path) -> None:
    def cached(pid: str, label: str, labels: list[str]) -> CachedSource:
        n = len(labels)
        return CachedSource(pid, label, np.zeros((n, 1, 2, 2), np.float16), labels, np.array([True] * (n - 1) + [False]))

    sources = [cached("P1", "pe", ["wnl", "pe", "pe", "wnl"]), cached("P1", "wnl", ["wnl", "wnl", "wnl"]),
               cached("P2", "other", ["other", "wnl"])]
    p1 = [np.array([0.1, 0.9, 0.95, 0.2]), np.array([0.3, 0.4, 0.5]), np.array([0.7, 0.123456])]
    p2 = [np.array([0.2, 0.8, 0.85, 0.1]), np.array([0.5, 0.6, 0.7]), np.array([0.1, 0.654321])]
    write_slice_csv(sources, p1, p2, 0.5, 0.5, tmp_path / "slices.csv")
    back = read_slice_csv(tmp_path / "slices.csv")
    assert [(s.patient_id, s.has_pe, len(s.p_pe)) for s in back] == [("P1", True, 4), ("P1", False, 3), ("P2", False, 2)]
    assert np.allclose(back[2].p_disease, p1[2], atol=1e-6) and np.allclose(back[0].p_pe, p2[0], atol=1e-6)
    assert back[0].has_lung.tolist() == [True, True, True, False]
    old = tmp_path / "old.csv"
    old.write_text("patient_id,slice_index,label,has_lung,p_stage1,p_stage2\nP1,0,wnl,1,0.1,0.2\n")
    with pytest.raises(ValueError, match="no 'series' column"):
        read_slice_csv(old)


CARD = {"intended_use": "tests", "training_data": "none", "limits": "none", "metrics": {}}


def test_registered_rule_is_found_by_its_pair_only(tmp_path) -> None:
    rule = PatientRule(0.6, 0.7, 3, name="pair_rule", target_sensitivity=0.95)
    register_patient_rule(rule, "a" * 64, "b" * 64, CARD, tmp_path)
    assert rule_for_pair(["x", "a" * 64], ["b" * 64], tmp_path) == rule
    assert rule_for_pair(["a" * 64], ["c" * 64], tmp_path) is None
    assert [e["name"] for e in read_patient_rules(tmp_path)] == ["pair_rule"]
    # the same name again replaces it; another name for the same pair is refused
    register_patient_rule(PatientRule(0.5, 0.7, 2, name="pair_rule", target_sensitivity=0.9), "a" * 64, "b" * 64,
                          CARD, tmp_path)
    assert rule_for_pair(["a" * 64], ["b" * 64], tmp_path).min_run == 2
    with pytest.raises(CheckpointError, match="already has the patient rule 'pair_rule'"):
        register_patient_rule(PatientRule(0.5, 0.5, 1, name="other", target_sensitivity=0.9), "a" * 64, "b" * 64,
                              CARD, tmp_path)
    data = json.loads((tmp_path / "models.json").read_text())
    data["patient_rules"][0]["min_run"] = 0
    (tmp_path / "models.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="min_run must be a whole number >= 1"):
        rule_for_pair(["a" * 64], ["b" * 64], tmp_path)


def test_an_evaluation_whose_checkpoint_changed_is_refused(tmp_path) -> None:
    from PETriageLib.models.checkpoint import file_sha256
    from PETriageLib.training.patient_rule_run import Evaluation

    s1, s2 = tmp_path / "s1.pt", tmp_path / "s2.pt"
    s1.write_bytes(b"stage one weights")
    s2.write_bytes(b"stage two weights")
    ev = tmp_path / "eval"
    ev.mkdir()
    source = CachedSource("P1", "pe", np.zeros((2, 1, 2, 2), np.float16), ["pe", "pe"], np.array([True, True]))
    write_slice_csv([source], [np.array([0.9, 0.9])], [np.array([0.8, 0.8])], 0.5, 0.5, ev / "slices.csv")
    report = {"stage1_checkpoint": str(s1), "stage2_checkpoint": str(s2), "refiner": None,
              "stage1_sha256": file_sha256(s1), "stage2_sha256": file_sha256(s2),
              "thresholds": {"stage1": 0.2, "stage2": 0.05}}
    (ev / "report.json").write_text(json.dumps(report))
    read = Evaluation.read("val", ev)
    assert read.thresholds == (0.2, 0.05) and read.pair_sha256() == (report["stage1_sha256"], report["stage2_sha256"])
    s2.write_bytes(b"stage two retrained")  # same path, other weights: the probabilities are not theirs
    with pytest.raises(ValueError, match="is no longer the checkpoint"):
        Evaluation.read("val", ev)
