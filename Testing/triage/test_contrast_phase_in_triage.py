"""Triage measures the contrast phase and says so: in the result, in report.json, and as a warning
when the scan is not contrast-enhanced (the shipped cascade learned PE from CTPA only)."""
from __future__ import annotations

import json

import pytest

from PETriageLib.phantom import generate_study
from PETriageLib.reporting.report import write_report
from PETriageLib.triage.cascade import build_cascade


@pytest.fixture(scope="module")
def cascade(tiny_checkpoints):
    return build_cascade(tiny_checkpoints[0], tiny_checkpoints[1], device="cpu", batch_size=8,
                         min_slices=10, domain_check="off")


def test_ctpa_series_gets_its_phase_and_no_warning(cascade, phantom_study, tmp_path):
    result = cascade.run(phantom_study.volume)  # the shared phantom is a CTPA study with PE
    assert result.contrast_phase.phase == "contrast" and result.contrast_phase.blood_hu > 200
    assert not any("contrast" in w for w in result.warnings)
    report = json.loads(write_report(result, tmp_path).report_json.read_text())
    assert report["contrast_phase"]["phase"] == "contrast"
    assert report["contrast_phase"]["blood_hu"] == result.contrast_phase.blood_hu


def test_non_contrast_series_is_warned_about(cascade, tmp_path):
    result = cascade.run(generate_study(8, matrix=128, slices=16, contrast="none", pe=False).volume)
    assert result.contrast_phase.phase == "non_contrast"
    (warning,) = [w for w in result.warnings if w.startswith("non-contrast scan (blood pool ")]
    assert "no non-contrast model was given (--nct-model)" in warning and "does not rule out PE" in warning
    report = json.loads(write_report(result, tmp_path).report_json.read_text())
    assert report["contrast_phase"]["phase"] == "non_contrast" and warning in report["warnings"]


def test_refused_series_is_not_measured(cascade):
    volume = generate_study(9, matrix=128, slices=16, contrast="ctpa", pe=False).volume
    short = type(volume)(**{**volume.__dict__, "hu": volume.hu[:4], "z_positions": volume.z_positions[:4],
                            "instance_uids": volume.instance_uids[:4]})
    result = cascade.run(short)
    assert result.verdict.verdict == "not_analysable" and result.contrast_phase is None
