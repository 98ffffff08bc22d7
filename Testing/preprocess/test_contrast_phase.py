"""The contrast phase measured from the blood pool: right on CTPA and non-contrast phantoms of the
same anatomy, on the real non-contrast series and on the real contrast slice; bone and thin slabs
do not fool it, and a scan it cannot tell is said to be undecided with the measured HU."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.data_paths import LUNG_PET_CT_DX

from PETriageLib.ingest.load import load_series
from PETriageLib.phantom import generate_study
from PETriageLib.preprocess.contrast_phase import (CONTRAST_ABOVE_HU, NON_CONTRAST_BELOW_HU, decide,
                                                   measure_contrast_phase)


@pytest.mark.parametrize("seed", [3, 11])
def test_ctpa_and_non_contrast_renderings_of_one_seed(seed):
    ctpa = measure_contrast_phase(generate_study(seed, matrix=128, slices=24, contrast="ctpa", pe=False).volume)
    plain = measure_contrast_phase(generate_study(seed, matrix=128, slices=24, contrast="none", pe=False).volume)
    assert ctpa.phase == "contrast" and ctpa.blood_hu > CONTRAST_ABOVE_HU + 50, ctpa
    assert plain.phase == "non_contrast" and plain.blood_hu < NON_CONTRAST_BELOW_HU - 30, plain
    assert len(ctpa.slices) >= 5 and len(plain.slices) >= 5


def test_real_non_contrast_series(real_series_dir):
    phase = measure_contrast_phase(load_series(real_series_dir))
    assert phase.phase == "non_contrast" and 30 < phase.blood_hu < 90, phase
    assert phase.area_mm2 > 20000 and len(phase.slices) == 12


@pytest.mark.parametrize("series", ["A0001-series2", "A0002-B70f"])
def test_real_lung_pet_ct_dx_series(series):
    folder = LUNG_PET_CT_DX / series
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (../shared/data)")
    phase = measure_contrast_phase(load_series(folder))
    assert phase.phase == "non_contrast" and phase.blood_hu < NON_CONTRAST_BELOW_HU, phase


def test_real_contrast_slice(lidc_slice_dir):
    for volume in (load_series(sorted(lidc_slice_dir.iterdir())[0]), load_series(lidc_slice_dir)):  # 1 and 2 slices
        phase = measure_contrast_phase(volume)
        assert phase.phase == "contrast" and phase.blood_hu > 200 and len(phase.slices) == 1, phase


def test_bone_between_the_lungs_is_not_taken_for_contrast():
    """A non-contrast phantom with a dense vertebra-like block between the lungs: removing bone
    (and its partial-volume rim) keeps the blood pool at plain soft tissue."""
    study = generate_study(5, matrix=128, slices=24, contrast="none")
    hu = study.volume.hu.astype(np.float32).copy()
    measured = measure_contrast_phase(study.volume)
    for k in measured.slices:  # a 10 x 10 px block of 1200 HU in the middle of the mediastinum
        hu[k, 60:70, 59:69] = 1200.0
    boned = measure_contrast_phase(dataclasses.replace(study.volume, hu=hu))
    assert boned.phase == "non_contrast" and abs(boned.blood_hu - measured.blood_hu) < 15, (measured, boned)


def test_undecided_cases_say_why():
    assert decide(None, 0.0)[0] == "undecided"
    phase, reason = decide(70.0, 900.0)
    assert phase == "undecided" and "900 mm^2 < 1500 mm^2" in reason
    phase, reason = decide(135.0, 5000.0)
    assert phase == "undecided" and "blood pool 135 HU" in reason and "cannot be told" in reason
    assert decide(109.0, 5000.0)[0] == "non_contrast" and decide(161.0, 5000.0)[0] == "contrast"
