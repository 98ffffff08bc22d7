"""Phantom files: valid DICOM CT read back by SimpleITK and pydicom, labels CSV, mask NRRD, data sets, CLI."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from PETriageLib.cli import main
from PETriageLib.phantom import FINDING_CODES, generate_dataset, generate_study, write_study


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    study = generate_study(3, matrix=96, slices=30, pe=True, other_kinds=["nodule"], difficulty="easy")
    out = tmp_path_factory.mktemp("study")
    return study, write_study(study, out)


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(written, tmp_path):
    study, paths = written
    again = write_study(generate_study(3, matrix=96, slices=30, pe=True, other_kinds=["nodule"],
                                       difficulty="easy"), tmp_path / "again")
    first, second = _digest(paths["series_dir"].parent), _digest(again["series_dir"].parent)
    assert len(first) == 30 + 3 and first == second


def test_simpleitk_reads_intended_geometry(written):
    study, paths = written
    vol = study.volume
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(paths["series_dir"])))
    img = reader.Execute()
    assert img.GetSize() == (96, 96, 30)
    assert np.allclose(img.GetSpacing(), vol.spacing, atol=1e-4)
    assert np.allclose(img.GetOrigin(), vol.origin, atol=1e-4)
    assert np.allclose(np.array(img.GetDirection()).reshape(3, 3), vol.direction)
    assert np.array_equal(sitk.GetArrayFromImage(img), vol.hu)
    # voxel (i, j, k) lands where the generator put it
    ijk = (40, 10, 17)
    assert np.allclose(img.TransformIndexToPhysicalPoint(ijk), (vol.ijk_to_lps @ [*ijk, 1])[:3], atol=1e-3)


def test_pydicom_tags(written):
    study, paths = written
    files = sorted(paths["series_dir"].glob("*.dcm"))
    ds = pydicom.dcmread(files[5])
    m = study.volume.metadata
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"
    assert ds.SOPInstanceUID == study.volume.instance_uids[5] == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.SeriesInstanceUID == m["series_uid"] and ds.StudyInstanceUID == m["study_uid"]
    assert all(uid.is_valid for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID))
    assert ds.ContrastBolusAgent and ds.ContrastBolusRoute == "IV"
    assert float(ds.ImagePositionPatient[2]) == pytest.approx(study.volume.z_positions[5], abs=1e-4)
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(ds.SliceThickness) == pytest.approx(m["slice_thickness"], abs=1e-3)
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert np.array_equal(hu, study.volume.hu[5])
    assert len({pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}) == 30


def test_noncontrast_has_no_contrast_tags(tmp_path):
    study = generate_study(4, matrix=64, slices=8, contrast="none", pe=False, other=False)
    ds = pydicom.dcmread(sorted(write_study(study, tmp_path)["series_dir"].glob("*.dcm"))[0])
    assert "ContrastBolusAgent" not in ds and "without" in ds.SeriesDescription.lower()


def test_labels_csv_and_mask_nrrd_agree(written):
    study, paths = written
    with open(paths["labels_csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["slice_index", "instance_uid", "z", "label", "pe", "consolidation", "ggo",
                             "nodule", "effusion", "emphysema"]
    mask_img = sitk.ReadImage(str(paths["mask"]))
    mask = sitk.GetArrayFromImage(mask_img)
    assert np.array_equal(mask, study.masks)
    assert np.allclose(mask_img.GetOrigin(), study.volume.origin, atol=1e-4)
    assert np.allclose(mask_img.GetSpacing(), study.volume.spacing, atol=1e-4)
    assert {r["label"] for r in rows} >= {"pe"}
    for k, row in enumerate(rows):
        codes = set(np.unique(mask[k])) - {0}
        assert int(row["slice_index"]) == k and row["instance_uid"] == study.volume.instance_uids[k]
        assert float(row["z"]) == pytest.approx(study.volume.z_positions[k], abs=1e-3)
        assert int(row["pe"]) == (FINDING_CODES["pe"] in codes)
        assert int(row["nodule"]) == (FINDING_CODES["nodule"] in codes)
        assert row["label"] == ("pe" if int(row["pe"]) else "other" if codes else "wnl")


def test_generate_dataset_manifest(tmp_path):
    calls = []
    manifest = generate_dataset(tmp_path, 4, seed=9, pe_fraction=0.5, other_fraction=0.5, matrix=64,
                                slices=(10, 14), progress=lambda done, total: calls.append((done, total)))
    with open(manifest) as fh:
        rows = list(csv.DictReader(fh))
    assert calls[-1] == (4, 4) and len(rows) == 4
    assert list(rows[0]) == ["patient_id", "series_dir", "labels_csv", "mask", "patient_label", "contrast",
                             "findings", "seed"]
    assert sum("pe" in r["findings"].split(";") for r in rows) == 2
    for r in rows:
        n = len(list((tmp_path / r["series_dir"]).glob("*.dcm")))
        assert 10 <= n <= 14 and (tmp_path / r["labels_csv"]).is_file() and (tmp_path / r["mask"]).is_file()
        if r["patient_label"] == "pe":
            assert r["contrast"] == "ctpa"
        assert len({r["patient_id"] for r in rows}) == 4
    with pytest.raises(ValueError, match="contrast"):
        generate_dataset(tmp_path / "bad", 2, seed=1, contrast="none", pe_fraction=0.5, matrix=64)


def test_cli_phantom(tmp_path, capsys):
    rc = main(["-q", "phantom", "--anatomy", "formula", "--out", str(tmp_path), "--patients", "2", "--seed", "1", "--matrix", "64",
               "--slices", "8", "--pe-fraction", "0", "--contrast", "none"])
    assert rc == 0
    manifest = Path(capsys.readouterr().out.strip().splitlines()[-1])
    with open(manifest) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {r["contrast"] for r in rows} == {"none"}
    assert all(r["patient_label"] in ("wnl", "other") for r in rows)


def test_project_ingest_reads_phantom(written):
    """The project's own loader and chest check accept the phantom as a chest CT."""
    from PETriageLib.ingest.load import load_series
    from PETriageLib.preprocess.lungs import analyse_lungs
    from PETriageLib.triage.eligibility import triage_problem

    study, paths = written
    vol = load_series(paths["series_dir"])
    assert np.array_equal(vol.hu, study.volume.hu) and vol.instance_uids == study.volume.instance_uids
    assert np.allclose(vol.origin, study.volume.origin, atol=1e-4)
    assert vol.metadata["contrast_agent"]
    lungs = analyse_lungs(vol)
    assert triage_problem(vol, lungs) is None
    assert sum(s.has_lung for s in lungs) >= len(lungs) // 2


def test_cli_default_anatomy_is_real():
    from PETriageLib.cli import build_parser

    args = build_parser().parse_args(["phantom", "--out", "x"])
    assert args.anatomy == "real" and args.cases_dir is None


def test_cli_real_without_cases_names_folder_and_formula(tmp_path, monkeypatch, caplog):
    from PETriageLib.cli import main
    from PETriageLib.errors import AnatomyError
    from PETriageLib.phantom.cases_dir import default_cases_dir, require_cases_dir

    monkeypatch.setenv("PETRIAGE_SHARED_DATA", str(tmp_path / "nowhere"))
    assert default_cases_dir() == tmp_path / "nowhere" / "real" / "cadpe-vessels"
    with pytest.raises(AnatomyError, match=r"nowhere/real/cadpe-vessels.*--anatomy formula"):
        require_cases_dir(None)
    assert main(["-q", "phantom", "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out" / "manifest.csv").exists()
