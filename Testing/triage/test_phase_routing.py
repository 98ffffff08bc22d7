"""Triage routes a series by its contrast phase (issue #24): a CTPA series to the cascade (+ the
segmentation model), a non-contrast one to the NCT model when given (its embolus components decide
the verdict), else to the cascade with a warning; the embolus maps always lie on the CT's grid."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from PETriageLib.errors import CheckpointError, NotAnalysableError
from PETriageLib.ingest.load import load_series
from PETriageLib.preprocess.contrast_phase import ContrastPhase
from PETriageLib.triage.cascade import build_cascade
from PETriageLib.triage.embolus import embolus_result
from PETriageLib.triage.phase_route import decide_pathway
from PETriageLib.training.seg_data import nct_rendering

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


def _cascade(tiny_checkpoints, **options):
    return build_cascade(tiny_checkpoints[0], tiny_checkpoints[1], device="cpu", batch_size=8, min_slices=10,
                         domain_check="off", **options)


@pytest.fixture(scope="module")
def routed(tiny_checkpoints, embolus_checkpoints):
    """Both models given: the seg model thresholded at 0 (every voxel), the NCT model at its own 0.5."""
    return _cascade(tiny_checkpoints, seg_model=embolus_checkpoints["seg_all"],
                    nct_model=embolus_checkpoints["nct_all"])


def _assert_on_grid(embolus, volume):
    assert embolus.probability.shape == volume.hu.shape and embolus.probability.dtype == np.float32
    assert embolus.mask.shape == volume.hu.shape and embolus.mask.dtype == np.uint8
    assert set(np.unique(embolus.mask)) <= {0, 1}
    assert 0.0 <= embolus.probability.min() and embolus.probability.max() <= 1.0


def test_ctpa_phantom_goes_to_the_cascade_with_the_seg_model(routed, phantom_study):
    volume = phantom_study.volume
    result = routed.run(volume)
    assert result.contrast_phase.phase == "contrast"
    assert result.phase.requested == "auto" and result.phase.used == "ctpa"
    assert result.phase.measured_blood_hu == result.contrast_phase.blood_hu > 160
    e = result.embolus
    assert e.pathway == "ctpa" and e.model == "seg_all.pt" and e.threshold == 0.0
    _assert_on_grid(e, volume)
    # threshold 0: every voxel is clot, one component over every slice
    assert e.mask.all() and e.n_components == 1 and e.slices == list(range(volume.num_slices))
    assert e.volume_ml == pytest.approx(np.prod(volume.hu.shape) * np.prod(volume.spacing) / 1000, rel=1e-4)
    assert result.verdict.rule != "non-contrast model: any predicted embolus component"  # the cascade's verdict


def test_nct_rendering_goes_to_the_nct_model_whose_components_decide(routed, phantom_study):
    volume = nct_rendering(phantom_study)
    result = routed.run(volume)
    assert result.contrast_phase.phase == "non_contrast"
    assert result.phase.used == "nct" and "the non-contrast model" in result.phase.reason
    assert not any("no non-contrast model was given (--nct-model)" in w for w in result.warnings)
    e = result.embolus
    assert e.pathway == "nct" and e.model == "nct_all.pt"
    _assert_on_grid(e, volume)
    v = result.verdict
    assert v.verdict == "pe_suspected" and v.rule == "non-contrast model: any predicted embolus component"
    assert v.pe_score == e.max_probability and v.pe_ranges == [(0, volume.num_slices - 1)]


def test_nct_model_finding_nothing_is_not_pe(tiny_checkpoints, embolus_checkpoints, phantom_study):
    cascade = _cascade(tiny_checkpoints, nct_model=embolus_checkpoints["nct_none"])
    result = cascade.run(nct_rendering(phantom_study))
    assert result.phase.used == "nct" and result.embolus.n_components == 0 and result.embolus.slices == []
    assert result.verdict.verdict in ("no_finding", "other_disease")
    assert "no embolus component at p >= 1 " in result.verdict.reason


def test_non_contrast_without_nct_model_uses_the_cascade_and_warns(tiny_checkpoints, embolus_checkpoints,
                                                                 phantom_study):
    cascade = _cascade(tiny_checkpoints, seg_model=embolus_checkpoints["seg_own"])
    result = cascade.run(nct_rendering(phantom_study))
    assert result.phase.used == "ctpa" and "no non-contrast model given" in result.phase.reason
    (warning,) = [w for w in result.warnings if w.startswith("non-contrast scan (blood pool ")]
    assert "no non-contrast model was given (--nct-model)" in warning
    assert result.embolus.pathway == "ctpa"  # the CTPA seg model still runs on the CTPA pathway


def test_forced_phase_overrides_the_measurement(tiny_checkpoints, embolus_checkpoints, phantom_study):
    nct = _cascade(tiny_checkpoints, phase="nct", nct_model=embolus_checkpoints["nct_own"]).run(phantom_study.volume)
    assert nct.contrast_phase.phase == "contrast" and nct.phase.used == "nct" and nct.embolus.pathway == "nct"
    ctpa = _cascade(tiny_checkpoints, phase="ctpa", nct_model=embolus_checkpoints["nct_own"]).run(
        nct_rendering(phantom_study))
    assert ctpa.phase.used == "ctpa" and ctpa.embolus is None  # no --seg-model: no segmentation on CTPA
    lone = _cascade(tiny_checkpoints, phase="nct").run(phantom_study.volume)
    assert lone.phase.used == "ctpa" and any("--phase nct without a non-contrast model" in w for w in lone.warnings)


def test_no_model_keeps_the_cascade_and_reports_the_phase(tiny_checkpoints, phantom_study):
    result = _cascade(tiny_checkpoints).run(phantom_study.volume)
    assert result.embolus is None and result.phase.used == "ctpa"
    assert "phase" not in result.options.to_dict() and "seg_model" not in result.options.to_dict()
    d = result.to_dict()
    assert d["embolus"] is None and d["phase"]["used"] == "ctpa" and d["phase"]["requested"] == "auto"


@pytest.mark.parametrize("which", ["covid-ct-md-cap002", "lung-pet-ct-dx"])
def test_real_non_contrast_series_go_to_the_nct_model_on_their_grid(which, routed, real_series_dir,
                                                                    lung_pet_ct_dx_series_dir):
    volume = load_series(real_series_dir if which == "covid-ct-md-cap002" else lung_pet_ct_dx_series_dir)
    result = routed.run(volume)
    assert result.contrast_phase.phase == "non_contrast" and result.contrast_phase.blood_hu < 110
    assert result.phase.used == "nct" and result.embolus.pathway == "nct"
    _assert_on_grid(result.embolus, volume)


def test_undecided_phase_goes_to_the_cascade_with_the_blood_hu_named():
    phase = ContrastPhase("undecided", 131.4, 5000.0, [3], "blood pool 131 HU, between 110 and 160 HU: poor or "
                          "late enhancement, phase cannot be told")
    decision = decide_pathway("auto", phase, has_nct_model=True)
    assert decision.used == "ctpa" and decision.measured_blood_hu == 131.4
    assert "131 HU" in decision.warning and "triaged with the CTPA cascade" in decision.warning


def test_a_probability_of_another_geometry_is_refused(phantom_study):
    volume = phantom_study.volume
    with pytest.raises(NotAnalysableError, match=r"has shape \(16, 64, 128\).*another geometry"):
        embolus_result("m", "ctpa", 0.5, np.zeros((16, 64, 128), np.float32), volume)


def test_a_segmentation_model_is_refused_for_the_nct_pathway(tiny_checkpoints, embolus_checkpoints):
    with pytest.raises(CheckpointError, match="the nct pathway needs cross_phase"):
        _cascade(tiny_checkpoints, nct_model=embolus_checkpoints["seg_own"])
    with pytest.raises(ValueError, match="unknown phase 'portal'"):
        _cascade(tiny_checkpoints, phase="portal")


def test_embolus_of_a_replaced_grid_is_refused_by_the_writer(routed, phantom_study, tmp_path):
    from PETriageLib.reporting.embolus_files import write_embolus_files

    result = routed.run(phantom_study.volume)
    bad = replace(result.embolus, mask=result.embolus.mask[:, :-1])
    with pytest.raises(NotAnalysableError, match="embolus mask has shape"):
        write_embolus_files(bad, result.volume, tmp_path)
    assert list(tmp_path.iterdir()) == []
