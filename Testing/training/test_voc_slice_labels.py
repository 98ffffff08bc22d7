"""Lung-PET-CT-Dx Pascal-VOC boxes -> the per-slice labels CSV a manifest reads, on the real files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pydicom
import pytest

from PETriageLib.training.manifest import ManifestError, load_manifest, read_slice_labels
from PETriageLib.training.voc_slice_labels import read_voc_boxes, write_voc_labels
from support.data_paths import LUNG_PET_CT_DX, REPO

needs_data = pytest.mark.skipif(not (LUNG_PET_CT_DX / "annotations").is_dir(),
                                reason=f"real Lung-PET-CT-Dx data absent ({LUNG_PET_CT_DX})")


@needs_data
def test_real_series_boxed_slices_are_other_and_the_rest_wnl(tmp_path: Path) -> None:
    series = LUNG_PET_CT_DX / "A0001-series2"
    result = write_voc_labels(series, LUNG_PET_CT_DX / "annotations" / "A0001", tmp_path / "labels.csv")
    files = sorted(series.glob("*.dcm"))
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    assert len(result.labels) == len(files) == 64
    assert result.n_other == 11  # 11 of the patient's 20 annotated slices belong to this series
    assert len(result.unmatched) == 20 - 11
    assert set(result.boxes) == {u for u, lab in result.labels.items() if lab == "other"}
    box = result.boxes[next(iter(result.boxes))][0]
    assert 0 <= box.xmin < box.xmax < 512 and 0 <= box.ymin < box.ymax < 512
    # The manifest reader matches the CSV to the series by instance UID, every slice labelled.
    labels = read_slice_labels(result.labels_csv, uids, [f.name for f in files])
    assert labels.count("other") == 11 and labels.count("wnl") == 53
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"patient_id,kind,path,labels\nA0001,dicom,{series},{result.labels_csv}\n")
    (source,) = load_manifest(manifest)
    assert source.patient_id == "A0001" and source.labels_csv == result.labels_csv
    with open(result.labels_csv, newline="") as fh:
        assert next(csv.reader(fh)) == ["instance_uid", "file", "label"]


def test_annotation_without_corners_is_refused_with_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "1.2.3.xml"
    bad.write_text("<annotation><object><name>A</name><bndbox><xmin>1</xmin></bndbox></object></annotation>")
    with pytest.raises(ManifestError, match=r"1\.2\.3\.xml"):
        read_voc_boxes(tmp_path)
    with pytest.raises(ManifestError, match="no Pascal-VOC"):
        read_voc_boxes(tmp_path / "empty")


def test_documented_split_keeps_real_patients_and_cases_apart() -> None:
    split = json.loads((REPO / "scripts" / "real_anatomy_split.json").read_text())
    train, test = set(split["train_cases"]), set(split["test_cases"])
    assert len(train) == 59 and len(test) == 12 and not train & test
    patient = lambda s: s.split("/")[-1].split("-")[0]  # noqa: E731 - series folder -> patient
    assert not {patient(s) for s in split["real_series"]["train"]} & {patient(s) for s in split["real_series"]["test"]}
