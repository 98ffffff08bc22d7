"""DICOM folder -> scalar volume node: geometry equals SimpleITK's, subject hierarchy and UIDs right."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from PETriageLib.ingest.volume import LPS_TO_RAS


def sitk_reference(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """IJK-to-RAS and voxels from SimpleITK's own GDCM series sort, independent of our code."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    img = reader.Execute()
    m = np.eye(4)
    m[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    m[:3, 3] = img.GetOrigin()
    m[:3, :] = LPS_TO_RAS @ m[:3, :]
    return m, sitk.GetArrayFromImage(img), list(files)


def check_geometry(node, folder: Path) -> list[str]:
    import slicer

    from PETriageSlicer.geometry import ijk_to_ras

    ref_matrix, ref_voxels, files = sitk_reference(folder)
    np.testing.assert_allclose(ijk_to_ras(node), ref_matrix, atol=1e-4)
    voxels = slicer.util.arrayFromVolume(node)
    assert voxels.shape == ref_voxels.shape
    assert np.array_equal(voxels, ref_voxels)
    return files


def test_generated_series_geometry_equals_simpleitk(scene, phantom_series):
    from PETriageSlicer.loading import load_dicom_folder

    node = load_dicom_folder(phantom_series)
    files = check_geometry(node, phantom_series)
    assert node.GetImageData().GetDimensions() == (128, 128, len(files))


def test_real_series_geometry_equals_simpleitk_and_triages(scene, real_series_dir, tiny_models):
    from PETriageSlicer.geometry import ijk_to_ras
    from PETriageSlicer.loading import load_dicom_folder
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.navigation import table_column

    node = load_dicom_folder(real_series_dir)
    check_geometry(node, real_series_dir)
    assert node.GetImageData().GetDimensions() == (512, 512, 131)
    np.testing.assert_allclose(np.linalg.norm(ijk_to_ras(node)[:3, :3], axis=0), [0.630859375, 0.630859375, 2.0])
    # File names IM0001.. are not in anatomical order; slice k must be the k-th lowest position.
    assert ijk_to_ras(node)[2, 2] > 0  # feet -> head

    # Real scanner output through the whole scene path: 131 rows, ascending z, a verdict.
    nodes = PETriageSceneLogic(scene).run(node, TriageSettings(*tiny_models, device="cpu", cam="none"))
    z = np.array(table_column(nodes.table, "z"))
    assert len(z) == 131 and np.allclose(np.diff(z), 2.0, atol=1e-3)
    assert z[0] == pytest.approx(-322.1, abs=1e-3)
    assert node.GetAttribute("PETriage.verdict") in ("pe_suspected", "other_disease", "no_finding")


def test_subject_hierarchy_and_dicom_uids(scene, phantom_series):
    import slicer

    from PETriageSlicer.loading import load_dicom_folder

    node = load_dicom_folder(phantom_series)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(Path(phantom_series).iterdir())]
    headers.sort(key=lambda h: float(h.ImagePositionPatient[2]))  # axial phantom: z is the slice normal
    first = headers[0]
    assert node.GetAttribute("DICOM.instanceUIDs").split() == [h.SOPInstanceUID for h in headers]

    SH = slicer.vtkMRMLSubjectHierarchyConstants
    sh = scene.GetSubjectHierarchyNode()
    series = sh.GetItemByDataNode(node)
    study = sh.GetItemParent(series)
    patient = sh.GetItemParent(study)
    assert sh.GetItemLevel(study) == SH.GetDICOMLevelStudy()
    assert sh.GetItemLevel(patient) == SH.GetDICOMLevelPatient()
    assert sh.GetItemParent(patient) == sh.GetSceneItemID()
    assert sh.GetItemUID(series, "DICOM") == first.SeriesInstanceUID
    assert sh.GetItemUID(study, "DICOM") == first.StudyInstanceUID
    assert sh.GetItemUID(patient, "DICOM") == first.PatientID
    assert sh.GetItemAttribute(patient, SH.GetDICOMPatientIDAttributeName()) == first.PatientID
    assert sh.GetItemAttribute(study, SH.GetDICOMStudyInstanceUIDAttributeName()) == first.StudyInstanceUID
    assert sh.GetItemAttribute(series, SH.GetDICOMSeriesModalityAttributeName()) == "CT"

    # A second series of the same study goes under the same study item, not a new one.
    again = load_dicom_folder(phantom_series)
    assert sh.GetItemParent(sh.GetItemByDataNode(again)) == study


def test_volume_from_node_equals_library_loader(scene, phantom_series):
    from PETriageLib.ingest.load import load_series
    from PETriageSlicer.geometry import volume_from_node
    from PETriageSlicer.loading import load_dicom_folder

    vol = volume_from_node(load_dicom_folder(phantom_series))
    ref = load_series(phantom_series)
    assert np.array_equal(vol.hu, ref.hu)
    np.testing.assert_allclose(vol.spacing, ref.spacing, atol=1e-6)
    np.testing.assert_allclose(vol.origin, ref.origin, atol=1e-4)
    np.testing.assert_allclose(vol.direction, ref.direction, atol=1e-6)
    np.testing.assert_allclose(vol.z_positions, ref.z_positions, atol=1e-4)
    assert vol.instance_uids == ref.instance_uids
    assert vol.metadata["series_uid"] == ref.metadata["series_uid"]
    assert vol.metadata["patient_id"] == ref.metadata["patient_id"]


def test_missing_folder_is_a_clear_error(scene, tmp_path):
    from PETriageLib.errors import SeriesError
    from PETriageSlicer.loading import load_dicom_folder

    with pytest.raises(SeriesError, match="no such file"):
        load_dicom_folder(tmp_path / "nothing-here")


def test_volume_without_dicom_gets_the_library_surrogate_uids(scene):
    import slicer

    from PETriageLib.ingest.scan import is_valid_uid
    from PETriageLib.ingest.load import surrogate_instance_uid
    from PETriageSlicer.geometry import volume_from_node

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "not from DICOM")
    slicer.util.updateVolumeFromArray(node, np.full((5, 8, 8), -1000, np.int16))
    node.SetSpacing(0.7, 0.7, 2.5)
    vol = volume_from_node(node)
    assert len(set(vol.instance_uids)) == 5 and all(is_valid_uid(u) for u in vol.instance_uids)
    key = f"{node.GetName()}|{node.GetID()}"
    assert vol.instance_uids[3] == surrogate_instance_uid(key, "slice0003", vol.z_positions[3])
    assert volume_from_node(node).instance_uids == vol.instance_uids  # stable across calls


def test_database_file_lists_are_put_in_slice_order(phantom_series):
    """slicer.dicomDatabase lists a series' files in database order; the node's slices are in
    position order, and so must be the file list kept for export (PETriage.sourceFiles)."""
    import random

    from PETriageLib.ingest.load import scan_series
    from PETriageSlicer.loading import files_in_slice_order

    ordered = [str(f) for f in scan_series(phantom_series)[0].files]
    shuffled = ordered[:]
    random.Random(4).shuffle(shuffled)
    assert shuffled != ordered
    assert files_in_slice_order(shuffled) == ordered
