"""Triage runs the pair's registered patient rule by default: its thresholds and run length,
overridable value by value, off with operating_point="slice"; named in the report's options."""
from __future__ import annotations

import pytest

from PETriageLib.models.checkpoint import file_sha256
from PETriageLib.models.patient_rules import PatientRule, register_patient_rule
from PETriageLib.triage.cascade import build_cascade

CARD = {"intended_use": "tests", "training_data": "none", "limits": "none", "metrics": {}}


@pytest.fixture
def rule_resources(tiny_checkpoints, tmp_path, monkeypatch):
    s1, s2 = tiny_checkpoints
    register_patient_rule(PatientRule(0.3, 0.7, 3, name="tiny_rule", target_sensitivity=0.95),
                          file_sha256(s1), file_sha256(s2), CARD, tmp_path)
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(tmp_path))
    return tmp_path


def options_of(tiny_checkpoints, **kw):
    return build_cascade(*tiny_checkpoints, device="cpu", **kw).options


def test_registered_rule_is_the_default(tiny_checkpoints, rule_resources):
    o = options_of(tiny_checkpoints)
    assert (o.threshold_disease, o.threshold_pe, o.min_run, o.patient_rule) == (0.3, 0.7, 3, "tiny_rule")
    assert o.to_dict()["operating_point"] == "patient" and o.to_dict()["patient_rule"] == "tiny_rule"


def test_explicit_values_override_the_rule_one_by_one(tiny_checkpoints, rule_resources):
    o = options_of(tiny_checkpoints, min_run=1)
    # the rule's other values stay, but it is not named: its validated figures do not hold any more
    assert (o.threshold_disease, o.threshold_pe, o.min_run, o.patient_rule) == (0.3, 0.7, 1, None)
    o = options_of(tiny_checkpoints, threshold_disease=0.4, threshold_pe=0.6, min_run=2)
    assert (o.threshold_disease, o.threshold_pe, o.min_run, o.patient_rule) == (0.4, 0.6, 2, None)


def test_slice_operating_point_ignores_the_rule(tiny_checkpoints, rule_resources):
    o = options_of(tiny_checkpoints, operating_point="slice")
    # the tiny checkpoints' own thresholds (support.checkpoints), any slice
    assert (o.threshold_disease, o.threshold_pe, o.min_run, o.patient_rule) == (0.5, 0.5, 1, None)


def test_pair_without_rule_keeps_its_slice_points(tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(tmp_path))  # an empty Resources: no rule at all
    o = options_of(tiny_checkpoints)
    assert (o.threshold_disease, o.threshold_pe, o.min_run, o.patient_rule) == (0.5, 0.5, 1, None)


def test_verdict_runs_with_the_rule(tiny_checkpoints, rule_resources, phantom_study):
    cascade = build_cascade(*tiny_checkpoints, device="cpu", batch_size=8, domain_check="off")
    result = cascade.run(phantom_study.volume)
    v = result.verdict
    assert (v.threshold_disease, v.threshold_pe, v.min_run, v.rule) == (0.3, 0.7, 3, "3 consecutive slices")
    assert result.options_dict()["patient_rule"] == "tiny_rule"
    from PETriageLib.reporting.summary import summary_markdown

    assert "p_disease >= 0.3, p_pe >= 0.7 (patient rule tiny_rule)" in summary_markdown(result)


def test_unknown_operating_point_is_refused(tiny_checkpoints):
    with pytest.raises(ValueError, match="unknown operating point 'both'; use one of patient, slice"):
        options_of(tiny_checkpoints, operating_point="both")
