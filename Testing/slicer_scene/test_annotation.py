"""Per-slice labels and lesion painting, exported as a manifest that the trainer's loader accepts."""
from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest


def add_model_results(ct, labels):
    from PETriageLib.triage.verdict import SliceRow, patient_verdict
    from PETriageSlicer.results import add_results

    rows = [SliceRow(k, float(k), "", True, True, 0.1 if lab == "wnl" else 0.9,
                     None if lab == "wnl" else (0.8 if lab == "pe" else 0.2), lab) for k, lab in enumerate(labels)]
    return add_results(ct, SimpleNamespace(rows=rows, verdict=patient_verdict(rows), domain=None, warnings=[]))


def test_labels_start_from_the_model_and_take_corrections(scene, phantom_series):
    from PETriageSlicer.annotation import create_annotations, labels_of, set_labels
    from PETriageSlicer.loading import load_dicom_folder
    from PETriageSlicer.navigation import table_column

    ct = load_dicom_folder(phantom_series)
    n = ct.GetImageData().GetDimensions()[2]
    assert labels_of(create_annotations(ct)) == ["wnl"] * n  # no results yet: all normal, by default
    model = ["wnl"] * n
    model[3], model[4] = "pe", "other"
    add_model_results(ct, model)
    table = create_annotations(ct)
    assert labels_of(table) == model
    assert table_column(table, "source")[3] == "model"
    set_labels(table, range(6, 9), "pe")
    set_labels(table, 4, "wnl")
    expected = list(model)
    expected[6:9] = ["pe"] * 3
    expected[4] = "wnl"
    assert labels_of(table) == expected
    assert [table_column(table, "source")[k] for k in (4, 6, 8)] == ["user"] * 3
    assert ct.GetNodeReference("PETriageLabels") is table
    with pytest.raises(ValueError, match="label must be one of"):
        set_labels(table, 1, "embolus")
    with pytest.raises(IndexError):
        set_labels(table, n, "pe")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_gives_a_manifest_the_trainer_loads(scene, phantom_series, tmp_path):
    import SimpleITK as sitk

    from PETriageLib.ingest.load import load_series
    from PETriageLib.phantom import FINDING_CODES
    from PETriageLib.training.loaders import load_source
    from PETriageLib.training.manifest import load_manifest
    from PETriageSlicer.annotation import (create_annotations, create_lesion_segmentation,
                                           export_training_manifest, labels_of, set_labels,
                                           set_segment_from_array)
    from PETriageSlicer.loading import load_dicom_folder

    ct = load_dicom_folder(phantom_series)
    n = ct.GetImageData().GetDimensions()[2]
    table = create_annotations(ct)
    set_labels(table, [5, 6, 7], "pe")
    set_labels(table, [10, 11], "other")
    seg = create_lesion_segmentation(ct)
    painted = np.zeros((n, 128, 128), np.uint8)
    painted[6, 60:70, 40:52] = 1  # a clot painted on slice 6
    set_segment_from_array(seg, "pe", painted, ct)
    cons = np.zeros_like(painted)
    cons[10:12, 30:50, 80:100] = 1
    set_segment_from_array(seg, "consolidation", cons, ct)

    out = tmp_path / "export"
    manifest = export_training_manifest(ct, table, out, segmentation=seg)
    rows = read_csv(manifest)
    assert list(rows[0]) == ["patient_id", "series_dir", "labels_csv", "mask", "patient_label", "contrast",
                             "findings", "seed"]
    assert len(rows) == 1 and rows[0]["patient_label"] == "pe"
    assert rows[0]["findings"].split(";") == ["pe", "consolidation"]

    sources = load_manifest(manifest)
    assert len(sources) == 1 and sources[0].kind == "dicom" and sources[0].patient_label == "pe"
    volume, labels = load_source(sources[0])  # exactly what the trainer does with each source
    assert labels == labels_of(table)
    original = load_series(phantom_series)
    assert np.array_equal(volume.hu, original.hu)

    label_rows = read_csv(out / rows[0]["labels_csv"])
    assert [int(r["pe"]) for r in label_rows] == [int(k in (5, 6, 7)) for k in range(n)]
    assert [int(r["consolidation"]) for r in label_rows] == [int(k in (10, 11)) for k in range(n)]
    mask_img = sitk.ReadImage(str(out / rows[0]["mask"]))
    np.testing.assert_allclose(mask_img.GetOrigin(), original.origin, atol=1e-4)
    np.testing.assert_allclose(mask_img.GetSpacing(), original.spacing, atol=1e-6)
    mask = sitk.GetArrayFromImage(mask_img)
    assert np.array_equal(mask == FINDING_CODES["pe"], painted == 1)
    assert np.array_equal(mask == FINDING_CODES["consolidation"], cons == 1)

    # Exporting the same series again replaces its row; the manifest stays one row per series.
    set_labels(table, 5, "wnl")
    export_training_manifest(ct, table, out)
    rows = read_csv(manifest)
    assert len(rows) == 1 and rows[0]["mask"] == ""
    assert load_source(load_manifest(manifest)[0])[1][5] == "wnl"


def test_real_series_without_instance_uids_exports_by_file(scene, real_series_dir, real_labels_csv, tmp_path):
    from PETriageLib.training.loaders import load_source
    from PETriageLib.training.manifest import load_manifest
    from PETriageSlicer.annotation import create_annotations, export_training_manifest, set_labels
    from PETriageSlicer.loading import load_dicom_folder

    ct = load_dicom_folder(real_series_dir)
    table = create_annotations(ct)
    # The dataset's radiologist labels (rows in ascending SliceLocation) become 'other'.
    truth = [int(r["infection"]) for r in read_csv(real_labels_csv)]
    set_labels(table, [k for k, v in enumerate(truth) if v], "other")
    manifest = export_training_manifest(ct, table, tmp_path / "real", patient_id="cap002")
    source = load_manifest(manifest)[0]
    assert source.patient_id == "cap002" and source.patient_label == "other"
    volume, labels = load_source(source)
    assert volume.num_slices == 131
    assert labels == ["other" if v else "wnl" for v in truth]
    assert sum(v == "other" for v in labels) == 15


def test_export_needs_source_files(scene, tmp_path):
    import slicer

    from PETriageSlicer.annotation import create_annotations, export_training_manifest

    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no files")
    slicer.util.updateVolumeFromArray(ct, np.zeros((3, 4, 4), np.int16))
    with pytest.raises(ValueError, match="no source DICOM files"):
        export_training_manifest(ct, create_annotations(ct), tmp_path)
