"""The one eligibility gate: what ingest warns about is what triage refuses, with one set of numbers."""
from __future__ import annotations

import numpy as np
import pytest
from support.dicom_factory import chest_hu, ct_volume, oblique_orientation, write_series

from PETriageLib.ingest.limits import (AXIAL_COSINE, GAP_FACTOR, MIN_LUNG_SLICE_FRACTION, MIN_SLICES, is_axial,
                                       modality_problem, spacing_gaps)
from PETriageLib.ingest.load import load_series
from PETriageLib.preprocess.lungs import analyse_lungs
from PETriageLib.triage.eligibility import chest_problem, series_problem, triage_problem


def test_modality_rule():
    assert modality_problem("MR") == "not a CT series (modality MR)"
    assert modality_problem("CT") is None and modality_problem("ct ") is None
    assert modality_problem("") is None and modality_problem(None) is None  # left to the SOP-class check


def test_axial_rule_at_its_limit():
    tilt = np.degrees(np.arccos(AXIAL_COSINE))  # about 9.9 degrees
    assert is_axial([0, 0, 1]) and is_axial([0, 0, -1])
    assert is_axial([0, np.sin(np.radians(tilt - 0.5)), np.cos(np.radians(tilt - 0.5))])
    assert not is_axial([0, np.sin(np.radians(tilt + 0.5)), np.cos(np.radians(tilt + 0.5))])


def test_spacing_gaps_ignore_duplicates():
    median, gaps = spacing_gaps([0, 2, 2, 4, 6, 6 + 2 * GAP_FACTOR + 0.1, 20])
    assert median == 2.0 and gaps.tolist() == [4, 5]
    assert spacing_gaps([5.0])[1].size == 0


@pytest.mark.parametrize("factor, refused", [(GAP_FACTOR * 0.95, False), (GAP_FACTOR * 1.04, True)])
def test_a_gap_ingest_warns_about_is_a_gap_triage_refuses(tmp_path, factor, refused):
    """One number for both: a step of 1.56 x the spacing was warned about at ingest and triaged
    (the gate used 1.6) before the gate and ingest shared ``GAP_FACTOR``."""
    n = MIN_SLICES + 4
    positions = [2.0 * k for k in range(n // 2)]
    positions += [positions[-1] + 2.0 * factor + 2.0 * k for k in range(n - len(positions))]
    write_series(tmp_path, chest_hu(n, 96, 96, lung_slices=range(n)), positions=positions)
    vol = load_series(tmp_path)
    warned = any("missing slices" in w for w in vol.warnings)
    problem = triage_problem(vol, analyse_lungs(vol))
    assert warned == refused
    assert (problem is not None and "gap in the series" in problem) == refused
    if not refused:
        assert problem is None


def test_a_tilted_series_ingest_warns_about_is_refused(tmp_path):
    n = MIN_SLICES + 2
    write_series(tmp_path, chest_hu(n, 96, 96, lung_slices=range(n)), orientation=oblique_orientation(15))
    vol = load_series(tmp_path)
    assert any("not an axial series" in w for w in vol.warnings) and not vol.is_axial
    assert "not an axial series" in triage_problem(vol, analyse_lungs(vol))
    write_series(tmp_path / "mild", chest_hu(n, 96, 96, lung_slices=range(n)), orientation=oblique_orientation(5))
    mild = load_series(tmp_path / "mild")
    assert not any("axial" in w for w in mild.warnings) and triage_problem(mild, analyse_lungs(mild)) is None


def test_gate_order_and_reasons():
    hu = chest_hu(MIN_SLICES, 96, 96, lung_slices=range(MIN_SLICES))
    vol = ct_volume(hu, spacing=(3.0, 3.0, 5.0))
    lungs = analyse_lungs(vol)
    assert triage_problem(vol, lungs) is None
    assert triage_problem(ct_volume(hu, modality="MR"), lungs) == "not a CT series (modality MR)"
    assert "too few slices (9 < 10)" in series_problem(ct_volume(hu[:9]))
    n = 20
    few = ct_volume(chest_hu(n, 96, 96, lung_slices=range(int(n * MIN_LUNG_SLICE_FRACTION) - 1)),
                    spacing=(3.0, 3.0, 5.0))
    assert "not a chest CT" in chest_problem(few, analyse_lungs(few))
    assert triage_problem(few, analyse_lungs(few)) == chest_problem(few, analyse_lungs(few))


def test_info_says_what_the_gate_says(tmp_path):
    """``petriage info`` reports the gate's answer for each series, beside the chest check."""
    from PETriageLib.cli.info import describe
    from PETriageLib.ingest.load import scan_series

    n = MIN_SLICES + 2
    write_series(tmp_path / "tilted", chest_hu(n, 96, 96, lung_slices=range(n)), orientation=oblique_orientation(15))
    info = scan_series(tmp_path / "tilted")[0]
    out = describe(info, lungs=True, quiet=True)
    assert out["not_chest_reason"] is None and "not an axial series" in out["not_analysable_reason"]
