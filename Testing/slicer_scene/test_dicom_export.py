"""The DICOM results of the current result, exported from the scene logic: the SR, key images and
heatmap maps of the CT's latest triage, referencing the CT's own instances slice by slice."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

from PETriageLib.errors import PETriageError
from support.dciodvfy import dciodvfy

SR, SC, PM = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.30"


@pytest.fixture(scope="module")
def exported(tiny_models, phantom_series, tmp_path_factory):
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.scene import new_scene

    logic = PETriageSceneLogic(new_scene())
    ct = logic.load_dicom(str(phantom_series))
    settings = TriageSettings(*tiny_models, device="cpu", cam="top-k", top_k=2)
    logic.run(ct, settings)
    out = tmp_path_factory.mktemp("dicom_out")
    files = logic.export_dicom_results(ct, str(out))
    task = logic.last_tasks[ct.GetID()]
    return SimpleNamespace(logic=logic, ct=ct, settings=settings, out=out, files=files, task=task,
                           uids=ct.GetAttribute("DICOM.instanceUIDs").split())


def test_the_sr_key_images_and_maps_of_the_current_result_are_written(exported):
    files = exported.files
    assert files.sr == exported.out / "sr.dcm"
    assert [p.name for p in files.key_images] == ["key_01.dcm", "key_02.dcm"]
    assert sorted(p.name for p in files.heatmaps) == ["heatmap_lung.dcm", "heatmap_vascular.dcm"]
    assert sorted(p.name for p in exported.out.iterdir()) == sorted(p.name for p in files.files)
    from PETriageLib.reporting.dicom_sr import read_verdict

    sr = pydicom.dcmread(files.sr)
    assert str(sr.SOPClassUID) == SR
    assert read_verdict(sr) == exported.task.result.verdict.verdict
    evidence = [i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence]
    assert sorted(evidence) == sorted(exported.uids) and len(exported.uids) == exported.ct.GetImageData().GetDimensions()[2]


def test_the_objects_reference_the_ct_slice_by_slice(exported, phantom_series):
    uids, slices = exported.uids, exported.task.heatmaps.slices
    keys = [pydicom.dcmread(p) for p in exported.files.key_images]
    assert {str(k.SOPClassUID) for k in keys} == {SC}
    assert sorted(k.SourceImageSequence[0].ReferencedSOPInstanceUID for k in keys) == sorted(uids[s] for s in slices)
    ct_by_uid = {str(ds.SOPInstanceUID): ds for ds in
                 (pydicom.dcmread(p, stop_before_pixels=True) for p in phantom_series.glob("*.dcm"))}
    ct = [ct_by_uid[u] for u in uids]  # the node's slice order
    z_of_slice = [float(ds.ImagePositionPatient[2]) for ds in ct]
    for branch, volume in exported.task.heatmaps.volumes.items():
        pm = pydicom.dcmread(exported.out / f"heatmap_{branch}.dcm")
        assert str(pm.SOPClassUID) == PM and pm.NumberOfFrames == len(uids)
        assert pm.FrameOfReferenceUID == ct[0].FrameOfReferenceUID and pm.StudyInstanceUID == ct[0].StudyInstanceUID
        # highdicom orders frames along its own dimension index: each frame is matched by its position
        frames = pm.PerFrameFunctionalGroupsSequence
        k_of_frame = [z_of_slice.index(float(f.PlanePositionSequence[0].ImagePositionPatient[2])) for f in frames]
        assert sorted(k_of_frame) == list(range(len(uids)))
        heat = pm.pixel_array / 1000.0
        assert np.abs(heat - volume[k_of_frame]).max() <= 0.5 / 1000 + 1e-6 and volume.max() > 0.05

def test_every_exported_object_passes_dciodvfy(exported):
    for path in exported.files.files:
        check = dciodvfy(path)
        assert not check.errors, f"{path.name}:\n{check.output}"


def test_a_ct_not_triaged_or_not_from_dicom_files_is_refused_with_the_reason(exported, phantom_series, tmp_path):
    from PETriageSlicer.loading import SOURCE_FILES_ATTRIBUTE

    logic, ct = exported.logic, exported.ct
    other = logic.load_dicom(str(phantom_series))  # the same series again, never triaged
    with pytest.raises(RuntimeError, match="has not been triaged"):
        logic.export_dicom_results(other, str(tmp_path / "a"))
    files = ct.GetAttribute(SOURCE_FILES_ATTRIBUTE)
    try:
        ct.RemoveAttribute(SOURCE_FILES_ATTRIBUTE)
        with pytest.raises(PETriageError, match="not loaded from DICOM files"):
            logic.export_dicom_results(ct, str(tmp_path / "b"))
        ct.SetAttribute(SOURCE_FILES_ATTRIBUTE, "|".join(files.split("|")[:-1]))
        with pytest.raises(PETriageError, match="source files"):
            logic.export_dicom_results(ct, str(tmp_path / "c"))
    finally:
        ct.SetAttribute(SOURCE_FILES_ATTRIBUTE, files)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
