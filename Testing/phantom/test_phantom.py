"""Phantom physics and truth: tissue HU, emboli inside opacified arteries, masks vs labels, determinism."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from PETriageLib.phantom import FINDING_CODES, generate_study
from PETriageLib.phantom.anatomy import TISSUES

SMALL = dict(matrix=128, slices=40)


@pytest.fixture(scope="module")
def normal_ctpa():
    return generate_study(11, matrix=192, slices=48, contrast="ctpa", pe=False, other=False)


@pytest.fixture(scope="module")
def normal_plain():
    return generate_study(12, matrix=192, slices=48, contrast="none", pe=False, other=False)


@pytest.fixture(scope="module")
def pe_study():
    return generate_study(13, matrix=192, slices=60, pe=True, other=False, difficulty="easy")


def _core_median(study, name: str) -> float:
    """Median HU of a tissue away from its edges (one voxel eroded in plane)."""
    m = study.tissues == TISSUES[name]
    core = ndimage.binary_erosion(m, structure=np.ones((1, 3, 3), bool))
    assert core.sum() > 20, f"too few {name} voxels"
    return float(np.median(study.volume.hu[core]))


@pytest.mark.parametrize("name,lo,hi", [
    ("lung", -900, -760), ("fat", -130, -60), ("muscle", 20, 85), ("bone", 250, 1200), ("abdomen", 30, 110),
    ("air", -1024, -950), ("artery", 230, 470), ("aorta", 100, 380),
])
def test_tissue_hu_ctpa(normal_ctpa, name, lo, hi):
    assert lo <= _core_median(normal_ctpa, name) <= hi


def test_noncontrast_blood_is_unopacified(normal_plain, normal_ctpa):
    for name in ("aorta", "artery"):
        assert 20 <= _core_median(normal_plain, name) <= 70
    assert normal_plain.volume.metadata["contrast_agent"] is None
    assert normal_ctpa.volume.metadata["contrast_agent"]


def test_noise_is_ct_like(normal_ctpa):
    """Noise in uniform fat: a few to ~30 HU, and correlated between neighbouring pixels."""
    hu = normal_ctpa.volume.hu.astype(np.float32)
    core = ndimage.binary_erosion(normal_ctpa.tissues == TISSUES["air"], structure=np.ones((1, 5, 5), bool))
    core[:, :, -3:] = False
    air = hu[:, :, :-1][core[:, :, :-1] & core[:, :, 1:]]
    right = hu[:, :, 1:][core[:, :, :-1] & core[:, :, 1:]]
    unclipped = (air > -1000) & (right > -1000)  # air sits at the -1024 floor; use the unclipped side
    assert 2 < hu[core].std() < 40
    assert np.corrcoef(air[unclipped], right[unclipped])[0, 1] > 0.1


def test_normal_study_is_all_wnl(normal_ctpa):
    assert normal_ctpa.patient_label == "wnl"
    assert set(normal_ctpa.slice_labels) == {"wnl"}
    assert not normal_ctpa.masks.any() and normal_ctpa.findings == []


def test_emboli_are_filling_defects_in_opacified_arteries(pe_study):
    s = pe_study
    pe = s.masks == FINDING_CODES["pe"]
    assert pe.any() and s.patient_label == "pe"
    # every PE voxel is artery lumen, and the artery is contrast-filled around it
    assert (s.tissues[pe] == TISSUES["artery"]).all()
    clot = np.median(s.volume.hu[pe])
    assert 0 <= clot <= 110, clot
    lumen = (s.tissues == TISSUES["artery"]) & ~ndimage.binary_dilation(pe, iterations=2)
    assert np.median(s.volume.hu[lumen]) > 200
    for k in np.flatnonzero(pe.any(axis=(1, 2))):
        assert s.slice_labels[k] == "pe"
    assert all(f.detail["level"] in ("saddle", "main", "lobar") for f in s.findings if f.kind == "pe")


def test_hard_emboli_are_peripheral():
    s = generate_study(21, matrix=256, slices=80, pe=True, other=False, difficulty="hard")
    levels = {f.detail["level"] for f in s.findings if f.kind == "pe"}
    assert levels and levels <= {"segmental", "subsegmental"}
    assert (s.masks == FINDING_CODES["pe"]).any()


def test_pe_needs_contrast():
    with pytest.raises(ValueError, match="contrast"):
        generate_study(1, contrast="none", pe=True, **SMALL)
    assert generate_study(2, pe=True, **SMALL).volume.metadata["contrast_agent"]


@pytest.mark.parametrize("kind,lo,hi", [
    ("consolidation", -60, 80), ("ggo", -760, -400), ("nodule", -40, 90), ("effusion", -25, 45),
    ("emphysema", -1024, -930),
])
def test_other_disease_hu_and_labels(kind, lo, hi):
    s = generate_study(31, matrix=160, slices=50, pe=False, other_kinds=[kind])
    m = s.masks == FINDING_CODES[kind]
    assert m.any(), f"no {kind} voxels"
    assert lo <= np.median(s.volume.hu[m]) <= hi
    # disease sits in the lung: parenchyma, or vessels/airways it replaced (nodules, effusion, bullae)
    inside = [TISSUES[n] for n in ("lung", "artery", "vein", "airway", "airway_wall")]
    assert np.isin(s.tissues[m], inside).all()
    assert (s.tissues[m] == TISSUES["lung"]).mean() > 0.4
    assert s.patient_label == "other" and {f.kind for f in s.findings} == {kind}
    _check_labels_match_masks(s)


def test_pe_with_other_disease_slice_priority():
    s = generate_study(41, matrix=160, slices=60, pe=True, other_kinds=["consolidation", "ggo", "effusion"],
                       difficulty="easy")
    _check_labels_match_masks(s)
    assert {"pe", "other"} <= set(s.slice_labels)
    assert {f.kind for f in s.findings} >= {"pe"}


def _check_labels_match_masks(s):
    for k, label in enumerate(s.slice_labels):
        codes = set(np.unique(s.masks[k])) - {0}
        want = "pe" if FINDING_CODES["pe"] in codes else ("other" if codes else "wnl")
        assert label == want, (k, label, codes)
        for name, flags in s.slice_flags.items():
            assert flags[k] == (FINDING_CODES[name] in codes)


def test_same_seed_same_volume_other_seed_differs():
    a, b = generate_study(5, **SMALL), generate_study(5, **SMALL)
    assert np.array_equal(a.volume.hu, b.volume.hu) and np.array_equal(a.masks, b.masks)
    assert a.volume.instance_uids == b.volume.instance_uids
    c = generate_study(6, **SMALL)
    assert not np.array_equal(a.volume.hu, c.volume.hu)
    assert set(a.volume.instance_uids).isdisjoint(c.volume.instance_uids)


def test_smaller_matrix_keeps_anatomy_in_mm():
    big = generate_study(7, matrix=256, slices=50, other=False, pe=False)
    small = generate_study(7, matrix=128, slices=50, other=False, pe=False)
    assert small.volume.spacing[0] == pytest.approx(2 * big.volume.spacing[0])

    def lung_litres(s):
        return (s.tissues == TISSUES["lung"]).sum() * np.prod(s.volume.spacing) / 1e6

    assert 2.0 < lung_litres(big) < 9.0
    assert lung_litres(small) == pytest.approx(lung_litres(big), rel=0.08)


def test_random_protocol_ranges():
    s = generate_study(8, matrix=64)
    n = s.volume.num_slices
    assert 60 <= n <= 300
    assert 0.6 <= s.volume.metadata["slice_thickness"] <= 5.5
    z = s.volume.z_positions
    assert np.all(np.diff(z) > 0) and np.allclose(np.diff(z), s.volume.spacing[2])
