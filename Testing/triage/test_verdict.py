"""Patient verdict logic on controlled per-slice probabilities, and series fitness checks."""
from __future__ import annotations

import numpy as np
import pytest

from PETriageLib.triage.verdict import (
    SliceRow,
    label_slice,
    patient_verdict,
    run_score,
    runs,
)
from PETriageLib.ingest.volume import CTVolume
from PETriageLib.triage.eligibility import series_problem


def make_rows(p_disease, p_pe, t1=0.5, t2=0.5):
    rows = []
    for k, (pd, pp) in enumerate(zip(p_disease, p_pe)):
        lung = pd is not None
        rows.append(SliceRow(k, z=2.0 * k, instance_uid=f"1.2.{k}", has_lung=lung, analysable=lung,
                             p_disease=pd, p_pe=pp, label=label_slice(pd, pp, t1, t2)))
    return rows


def test_label_slice_follows_the_cascade():
    assert label_slice(0.2, None, 0.5, 0.5) == "wnl"
    assert label_slice(0.2, 0.99, 0.5, 0.5) == "wnl"  # stage 2 alone never makes a pe slice
    assert label_slice(0.7, 0.6, 0.5, 0.5) == "pe"
    assert label_slice(0.7, 0.4, 0.5, 0.5) == "other"
    assert label_slice(None, None, 0.5, 0.5) is None
    with pytest.raises(ValueError):
        label_slice(0.9, None, 0.5, 0.5)


def test_runs_and_run_score():
    assert runs([False, True, True, False, True]) == [(1, 2), (4, 4)]
    assert runs([]) == []
    s = np.array([0.9, 0.1, 0.8, 0.7, 0.95, 0.2])
    assert run_score(s, 1) == pytest.approx(0.95)
    assert run_score(s, 2) == pytest.approx(0.7)  # best pair: (0.7, 0.95)
    assert run_score(s, 3) == pytest.approx(0.7)
    assert run_score(s, 7) == 0.0


def test_any_slice_rule_flags_a_single_pe_slice():
    rows = make_rows([0.1, 0.2, 0.9, 0.8, 0.1], [None, None, 0.7, 0.3, None])
    v = patient_verdict(rows)
    assert v.verdict == "pe_suspected"
    assert v.pe_ranges == [(2, 2)]
    assert v.disease_ranges == [(2, 3)]
    assert v.max_pe_slice == 2
    assert v.pe_score == pytest.approx(0.7)
    assert v.disease_score == pytest.approx(0.9)
    assert v.counts == {"wnl": 3, "other": 1, "pe": 1, "analysed": 5, "slices": 5}
    assert v.rule == "any slice"


def test_patient_classifier_decides_pe_both_ways():
    pe_slice = make_rows([0.1, 0.9, 0.1], [None, 0.8, None])
    v = patient_verdict(pe_slice, patient_probability=0.2, patient_threshold=0.3)
    assert v.verdict == "other_disease" and v.rule == "patient classifier"
    assert "p(PE) 0.200 < 0.300" in v.reason and v.pe_ranges == [(1, 1)]  # the slices still show where
    no_pe_slice = make_rows([0.1, 0.2, 0.1], [None, None, None])
    v = patient_verdict(no_pe_slice, patient_probability=0.3, patient_threshold=0.3)
    assert v.verdict == "pe_suspected" and "0 slice(s) classified pe" in v.reason
    assert v.to_dict()["patient_probability"] == 0.3 and v.to_dict()["patient_threshold"] == 0.3
    assert patient_verdict(no_pe_slice, patient_probability=0.1, patient_threshold=0.3).verdict == "no_finding"
    assert patient_verdict(pe_slice, patient_probability=0.9, patient_threshold=0.3,
                           not_analysable_reason="gap").verdict == "not_analysable"
    with pytest.raises(ValueError, match="needs its threshold"):
        patient_verdict(pe_slice, patient_probability=0.5)


def test_min_run_demotes_isolated_pe_slices_to_other_disease():
    rows = make_rows([0.9, 0.1, 0.9, 0.9, 0.1], [0.8, None, 0.2, 0.7, None])
    assert patient_verdict(rows, min_run=1).verdict == "pe_suspected"
    v = patient_verdict(rows, min_run=2)
    assert v.verdict == "other_disease"
    assert v.pe_score == pytest.approx(0.2)  # best 2-run of pe scores: (0.2, 0.7)
    assert v.pe_ranges == [(0, 0), (3, 3)]
    rows = make_rows([0.9, 0.9, 0.9], [0.6, 0.9, 0.1])
    v = patient_verdict(rows, min_run=2)
    assert v.verdict == "pe_suspected" and v.pe_score == pytest.approx(0.6) and v.pe_ranges == [(0, 1)]


def test_max_pe_slice_ignores_stage2_on_slices_stage1_called_normal():
    # --all-slices gives p_pe everywhere; a wnl slice's p_pe must not make the patient positive.
    rows = make_rows([0.1, 0.6, 0.1], [0.99, 0.3, 0.95])
    v = patient_verdict(rows)
    assert v.verdict == "other_disease"
    assert v.max_pe_slice == 1
    assert v.pe_score == pytest.approx(0.3)


def test_thresholds_move_the_verdict():
    rows = make_rows([0.1, 0.45, 0.3], [None, None, None])
    assert patient_verdict(rows).verdict == "no_finding"
    rows = make_rows([0.1, 0.45, 0.3], [None, 0.7, None], t1=0.4, t2=0.75)
    v = patient_verdict(rows, threshold_disease=0.4, threshold_pe=0.75)
    assert v.verdict == "other_disease" and v.threshold_pe == 0.75
    assert patient_verdict(make_rows([0.1, 0.45], [None, 0.7], t1=0.4, t2=0.6), 0.4, 0.6).verdict == "pe_suspected"


def test_not_analysable_when_no_slice_was_analysed_or_a_reason_is_given():
    v = patient_verdict(make_rows([None, None], [None, None]))
    assert v.verdict == "not_analysable" and "lung" in v.reason
    v = patient_verdict(make_rows([0.9], [0.9]), not_analysable_reason="not a CT series (modality MR)")
    assert v.verdict == "not_analysable" and v.reason.startswith("not a CT")
    assert v.pe_score is None
    with pytest.raises(ValueError):
        patient_verdict(make_rows([0.9], [0.9]), min_run=0)


def _volume(n=20, step=2.0, modality="CT", direction=None, z=None):
    zs = np.arange(n) * step if z is None else np.asarray(z, float)
    return CTVolume(hu=np.full((len(zs), 8, 8), -1024, np.int16), spacing=(0.7, 0.7, step), origin=(0, 0, 0),
                    direction=np.eye(3) if direction is None else direction, z_positions=zs,
                    instance_uids=[str(i) for i in range(len(zs))], metadata={"modality": modality})


def test_series_problem_reasons():
    assert series_problem(_volume()) is None
    assert "modality MR" in series_problem(_volume(modality="MR"))
    assert "too few slices (1 < 10)" in series_problem(_volume(n=1))
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)
    assert "axial" in series_problem(_volume(direction=sagittal))
    gap = series_problem(_volume(z=list(range(0, 20, 2)) + list(range(40, 60, 2))))
    assert "gap" in gap and "slices 9 and 10" in gap
