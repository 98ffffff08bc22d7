"""Dynamic lung crop: body, lungs, box with margin, fixed fallback, 3D clean-up, not-a-chest reasons."""
from __future__ import annotations

import numpy as np
import pytest
from support.dicom_factory import chest_hu, ct_volume

from PETriageLib.ingest.load import load_series
from PETriageLib.triage.eligibility import chest_problem, triage_problem
from PETriageLib.preprocess.lungs import (MIN_LUNG_MM2, analyse_lungs, find_lungs, fixed_box,
                                   keep_main_air_3d, lung_slice_range)


def test_box_encloses_the_drawn_lungs_plus_margin():
    hu = chest_hu(1, 256, 256)[0]
    inner = (hu < -700) & ~(chest_hu(1, 256, 256, lung_slices=[])[0] < -700)  # the drawn lung pixels
    rows, cols = np.flatnonzero(inner.any(1)), np.flatnonzero(inner.any(0))
    s = find_lungs(hu, (0.8, 0.8), margin_mm=8.0)
    assert s.has_lung and 0.1 < s.lung_fraction < 0.6
    r0, r1, c0, c1 = s.box
    margin_px = 8.0 / 0.8
    # box = lung extent + 10 px margin, within the 2 px quantisation of the working resolution
    assert r0 == pytest.approx(rows[0] - margin_px, abs=3) and r1 == pytest.approx(rows[-1] + 1 + margin_px, abs=3)
    assert c0 == pytest.approx(cols[0] - margin_px, abs=3) and c1 == pytest.approx(cols[-1] + 1 + margin_px, abs=3)
    mask = s.full_mask(hu.shape)
    assert mask.shape == hu.shape and (hu[mask] < -700).mean() > 0.9 and mask.sum() > 0.8 * inner.sum()


def test_no_lung_gives_fixed_central_box():
    hu = chest_hu(1, 128, 160, lung_slices=[])[0]
    s = find_lungs(hu, (1.0, 1.0))
    assert not s.has_lung and s.box == fixed_box((128, 160)) == (14, 114, 17, 142)
    assert fixed_box((512, 512)) == (56, 456, 56, 456)  # the paper's 400 x 400


def test_too_little_lung_is_no_lung():
    hu = chest_hu(1, 96, 96)[0]
    small_spacing = np.sqrt(MIN_LUNG_MM2 / (hu < -700).sum()) * 0.2  # same pixels, tiny physical area
    assert not find_lungs(hu, (small_spacing, small_spacing)).has_lung
    assert find_lungs(hu, (1.0, 1.0)).has_lung


def test_3d_cleanup_drops_small_pockets():
    masks = np.zeros((6, 20, 20), bool)
    masks[:, 2:12, 2:12] = True  # a lung through all slices
    masks[0, 15:18, 15:18] = True  # a gas bubble on one slice
    kept = keep_main_air_3d(masks)
    assert kept[:, 2:12, 2:12].all() and not kept[0, 15:18, 15:18].any()


def test_series_lung_range_and_chest_check():
    hu = chest_hu(10, 96, 96, lung_slices=range(2, 8))
    vol = ct_volume(hu, spacing=(3.0, 3.0, 5.0))
    ticks = []
    lungs = analyse_lungs(vol, progress=lambda d, t, m: ticks.append((d, t)))
    assert [s.has_lung for s in lungs] == [False] * 2 + [True] * 6 + [False] * 2
    assert lung_slice_range(lungs) == (2, 7) and ticks[-1] == (10, 10)
    assert chest_problem(vol, lungs) is None
    head = ct_volume(chest_hu(10, 96, 96, lung_slices=[]), spacing=(3.0, 3.0, 5.0), body_part="HEAD")
    reason = chest_problem(head, analyse_lungs(head))
    assert "no lung found on any of 10 slices" in reason and "HEAD" in reason
    few = ct_volume(chest_hu(20, 96, 96, lung_slices=[0]), spacing=(3.0, 3.0, 5.0))
    assert "only 1 of 20 slices" in chest_problem(few, analyse_lungs(few))
    mr = ct_volume(hu, modality="MR")
    assert triage_problem(mr, lungs) == "not a CT series (modality MR)"


def test_real_series_lungs(real_series_dir):
    vol = load_series(real_series_dir)
    lungs = analyse_lungs(vol)
    first, last = lung_slice_range(lungs)
    assert first <= 5 and 115 <= last <= 128  # lungs from the bases to the apices, not above
    assert not lungs[130].has_lung and lungs[130].box == (56, 456, 56, 456)
    mid = lungs[65]
    assert mid.has_lung and mid.lung_fraction > 0.2
    r0, r1, c0, c1 = mid.box
    assert 30 < r0 < 120 and 350 < r1 < 450 and 20 < c0 < 100 and 420 < c1 < 500
    assert (vol.hu[65][mid.full_mask((512, 512))] < -500).mean() > 0.95
    assert chest_problem(vol, lungs) is None


def test_real_non_chest_ct_is_rejected():
    pytest.importorskip("data_store", reason="pydicom-data not installed")
    from pydicom.data import get_testdata_file

    for name in ("693_J2KR.dcm", "bad_sequence.dcm"):  # head (JPEG 2000), neck (JPEG Lossless)
        vol = load_series(get_testdata_file(name))
        reason = chest_problem(vol, analyse_lungs(vol))
        assert reason is not None and "not a chest CT" in reason


def test_lidc_slice_has_lungs(lidc_slice_dir):
    vol = load_series(lidc_slice_dir)
    s = find_lungs(vol.hu[0], (0.625, 0.625))
    assert s.has_lung and s.lung_fraction > 0.2
    r0, r1, c0, c1 = s.box
    assert r1 - r0 > 200 and c1 - c0 > 300
