"""Real-anatomy phantoms on a CAD-PE case: lungs equal the case's, contrast in the real range, clots in
the lumen, both phases with one geometry, labels equal to the mask, bad cases refused."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from PETriageLib.errors import AnatomyError
from PETriageLib.phantom import FINDING_CODES
from PETriageLib.phantom.anatomy import TISSUES
from PETriageLib.phantom.real_case import load_case, resample_case
from PETriageLib.phantom.real_fit import load_fit
from PETriageLib.phantom.real_study import RealOptions, generate_real_studies
from Testing.support.data_paths import CADPE_VESSELS

pytestmark = pytest.mark.skipif(not CADPE_VESSELS.is_dir(), reason=f"real CAD-PE masks not found at {CADPE_VESSELS}")

CASE = "e0485"  # 81 slices of 3 mm: the smallest case; 2 mm pixels keep the suite fast
PIXEL = 2.0


@pytest.fixture(scope="module")
def case():
    return resample_case(load_case(CADPE_VESSELS, CASE), PIXEL)


@pytest.fixture(scope="module")
def pe_pair():
    return generate_real_studies(CADPE_VESSELS, CASE, 4, options=RealOptions(pe=True, clots=3, pixel_mm=PIXEL))


@pytest.fixture(scope="module")
def disease_pair():
    kinds = ("consolidation", "ggo", "nodule", "effusion", "emphysema")
    return generate_real_studies(CADPE_VESSELS, CASE, 5, options=RealOptions(pe=True, other_kinds=kinds,
                                                                             pixel_mm=PIXEL))


def _lung_from_hu(hu: np.ndarray) -> np.ndarray:
    """Air inside the body, per slice, with the vessels in it filled: what a reader calls lung."""
    out = np.zeros(hu.shape, bool)
    for k, sl in enumerate(hu < -400):
        lab, _ = ndimage.label(sl)
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        out[k] = ndimage.binary_fill_holes(sl & ~np.isin(lab, edge))
    return out


def test_rendered_lung_is_the_case_lung(pe_pair, case):
    lung = _lung_from_hu(pe_pair["ctpa"].volume.hu)
    dice = 2 * (lung & case.lung).sum() / (lung.sum() + case.lung.sum())
    assert dice >= 0.95, dice
    assert pe_pair["ctpa"].volume.hu.shape == case.shape


def test_ctpa_artery_hu_in_real_range(pe_pair, case):
    lo, _, hi = load_fit()["enhancement"]["pa_hu_p5_p50_p95"]
    hu = pe_pair["ctpa"].volume.hu
    pe = pe_pair["ctpa"].masks == FINDING_CODES["pe"]
    core = ndimage.binary_erosion(case.artery, iterations=1) & ~ndimage.binary_dilation(pe, iterations=2)
    assert core.sum() > 500
    assert lo <= np.median(hu[core]) <= hi
    assert 30 <= np.median(pe_pair["non_contrast"].volume.hu[core]) <= 60  # unenhanced blood


def test_every_clot_voxel_is_in_the_lumen(pe_pair, case):
    s = pe_pair["ctpa"]
    pe = s.masks == FINDING_CODES["pe"]
    assert pe.sum() > 10 and s.patient_label == "pe"
    assert not (pe & ~case.artery).any()
    clots = [f for f in s.findings if f.kind == "pe"]
    assert len(clots) == 3 and all(f.detail["level"] in ("main", "lobar", "segmental", "subsegmental") for f in clots)
    core = ndimage.binary_erosion(pe, iterations=1)
    if core.any():  # a filling defect: clot HU, far below the contrast around it
        assert np.median(s.volume.hu[core]) < 150


def test_phases_share_geometry_masks_and_labels(pe_pair):
    a, b = pe_pair["ctpa"], pe_pair["non_contrast"]
    va, vb = a.volume, b.volume
    assert va.hu.shape == vb.hu.shape and va.spacing == vb.spacing and va.origin == vb.origin
    assert np.array_equal(va.direction, vb.direction) and np.array_equal(va.z_positions, vb.z_positions)
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.tissues, b.tissues)
    assert a.slice_labels == b.slice_labels and a.patient_label == b.patient_label
    assert va.metadata["frame_of_reference_uid"] == vb.metadata["frame_of_reference_uid"]
    assert va.metadata["series_uid"] != vb.metadata["series_uid"]
    assert va.metadata["contrast_agent"] and vb.metadata["contrast_agent"] is None
    assert not np.array_equal(va.hu, vb.hu)


def test_slice_labels_follow_the_mask(disease_pair):
    for s in disease_pair.values():
        assert {"pe", "other"} <= set(s.slice_labels)
        for k, label in enumerate(s.slice_labels):
            codes = set(np.unique(s.masks[k])) - {0}
            assert label == ("pe" if FINDING_CODES["pe"] in codes else "other" if codes else "wnl")
            for name, flags in s.slice_flags.items():
                assert flags[k] == (FINDING_CODES[name] in codes)


def test_other_disease_lies_in_the_real_lungs(disease_pair):
    s = disease_pair["ctpa"]
    lung = s.tissues == TISSUES["lung"]
    found = {f.kind for f in s.findings} - {"pe"}
    assert len(found) >= 3, found
    for kind in found:
        m = s.masks == FINDING_CODES[kind]
        assert m.any() and not (m & ~lung).any(), kind
    eff = s.masks == FINDING_CODES["effusion"]
    if eff.any():
        assert -40 <= np.median(s.volume.hu[eff]) <= 60


def test_same_seed_same_study():
    opts = RealOptions(pe=True, clots=1, pixel_mm=4.0)
    a = generate_real_studies(CADPE_VESSELS, CASE, 9, ("ctpa",), opts)["ctpa"]
    b = generate_real_studies(CADPE_VESSELS, CASE, 9, ("ctpa",), opts)["ctpa"]
    assert np.array_equal(a.volume.hu, b.volume.hu) and np.array_equal(a.masks, b.masks)


def test_resampled_to_a_chosen_thickness(case):
    thick = resample_case(case, None, 5.0)
    assert thick.spacing[2] == 5.0 and thick.shape[0] == round(case.shape[0] * case.spacing[2] / 5.0)
    assert thick.lung.sum() * 5.0 == pytest.approx(case.lung.sum() * case.spacing[2], rel=0.1)
    with pytest.raises(AnatomyError, match="0.6-5 mm"):
        resample_case(case, None, 8.0)


# --- bad cases ------------------------------------------------------------------------------
def _write(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def _tiny_case(folder: Path, vessels=None, lung=None, lung_spacing=(1.0, 1.0, 1.0)) -> None:
    v = np.zeros((6, 16, 16), np.uint8)
    v[2:4, 5:7, 5:7], v[2:4, 9:11, 9:11] = 1, 2
    m = np.zeros((6, 16, 16), np.uint8)
    m[1:5, 2:14, 2:14] = 1
    _write(folder / "c1.nii.gz", v if vessels is None else vessels)
    if lung is not False:
        _write(folder / "c1_lungmask.nii.gz", m if lung is None else lung, lung_spacing)


def test_good_tiny_case_loads(tmp_path):
    _tiny_case(tmp_path)
    c = load_case(tmp_path, "c1")
    assert c.artery.sum() == 8 and c.vein.sum() == 8 and c.lung.any()


@pytest.mark.parametrize("kind,match", [
    ("no_lung", "lung mask is missing"), ("empty_lung", "lung mask is empty"),
    ("no_artery", r"artery label \(1\) is empty"), ("geometry", "geometry"), ("damaged", "cannot be read"),
])
def test_bad_cases_are_refused_with_file_and_reason(tmp_path, kind, match):
    if kind == "no_lung":
        _tiny_case(tmp_path, lung=False)
    elif kind == "empty_lung":
        _tiny_case(tmp_path, lung=np.zeros((6, 16, 16), np.uint8))
    elif kind == "no_artery":
        v = np.zeros((6, 16, 16), np.uint8)
        v[2, 3, 3] = 2
        _tiny_case(tmp_path, vessels=v)
    elif kind == "geometry":
        _tiny_case(tmp_path, lung_spacing=(0.7, 0.7, 1.0))
    else:
        _tiny_case(tmp_path)
        (tmp_path / "c1_lungmask.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(AnatomyError, match=match) as err:
        load_case(tmp_path, "c1")
    assert str(tmp_path) in str(err.value)


def test_missing_vessel_file_is_refused(tmp_path):
    with pytest.raises(AnatomyError, match=r"c9\.nii\.gz: the artery/vein mask is missing"):
        load_case(tmp_path, "c9")


def test_cli_real_anatomy_writes_both_phases(tmp_path, capsys):
    from PETriageLib.cli import main

    rc = main(["-q", "phantom", "--anatomy", "real", "--cases-dir", str(CADPE_VESSELS), "--case", CASE,
               "--out", str(tmp_path), "--patients", "1", "--pe-fraction", "1", "--other-fraction", "0",
               "--pixel", "4", "--slice-thickness", "5"])
    assert rc == 0
    manifest = Path(capsys.readouterr().out.strip().splitlines()[-1])
    rows = list(csv.DictReader(open(manifest)))
    assert [r["contrast"] for r in rows] == ["ctpa", "none"] and {r["patient_label"] for r in rows} == {"pe"}
    folder = manifest.parent / Path(rows[0]["series_dir"]).parent
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask.nrrd")))
    vessels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "vessels.nrrd")))
    lung = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "lung.nrrd")))
    assert len(list((folder / "series").glob("*.dcm"))) == mask.shape[0] == 49  # 243 mm at 5 mm
    assert not ((mask == FINDING_CODES["pe"]) & (vessels != 1)).any() and lung.any() and (vessels == 2).any()
    labels = list(csv.DictReader(open(folder / "labels.csv")))
    assert [int(r["pe"]) for r in labels] == list((mask == FINDING_CODES["pe"]).any(axis=(1, 2)).astype(int))


def test_docs_example_runs(tmp_path, monkeypatch):
    from Testing.support.docs_examples import python_block
    from Testing.support.data_paths import REPO

    code = python_block(REPO / "docs" / "phantom.md", "### Real-anatomy example")
    code = code.replace('"../shared/data/real/cadpe-vessels"', repr(str(CADPE_VESSELS)))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/phantom.md", "exec"), {})
    assert (tmp_path / "real_phantom" / "non_contrast" / "lung.nrrd").is_file()


def test_written_phases_pass_the_projects_ingest_and_gate(pe_pair, tmp_path):
    from PETriageLib.ingest.load import load_series
    from PETriageLib.phantom.real_writer import write_real_studies
    from PETriageLib.preprocess.lungs import analyse_lungs
    from PETriageLib.triage.eligibility import triage_problem

    paths = write_real_studies(pe_pair, tmp_path)
    for phase, study in pe_pair.items():
        vol = load_series(paths[phase]["series_dir"])
        assert np.array_equal(vol.hu, study.volume.hu) and not vol.warnings
        assert triage_problem(vol, analyse_lungs(vol)) is None, phase
        vessels = sitk.GetArrayFromImage(sitk.ReadImage(str(paths[phase]["vessels"])))
        assert np.array_equal(vessels == 1, study.tissues == TISSUES["artery"])
