"""Series that `petriage triage` refuses are refused in the Slicer module too (issue #25): the node
is read by Slicer's own reader, which hides gantry tilt, lost slices and bad pixels; the module
keeps what the headers say and checks the voxels, and the gate refuses with the same reason."""
from __future__ import annotations

import random

import numpy as np
from support.fuzz_series import write_every_other_unreadable, write_good, write_pixel_garbage, write_tilted

from PETriageLib.ingest.load import load_series
from PETriageLib.triage.eligibility import series_problem


def _node_problem(folder) -> str | None:
    from PETriageSlicer.geometry import volume_from_node
    from PETriageSlicer.loading import load_dicom_folder

    return series_problem(volume_from_node(load_dicom_folder(folder)))


def test_good_series_has_no_defects_and_its_real_positions(scene, tmp_path):
    from PETriageSlicer.geometry import volume_from_node
    from PETriageSlicer.loading import load_dicom_folder

    write_good(tmp_path)
    volume = volume_from_node(load_dicom_folder(tmp_path))
    assert volume.defects == [] and series_problem(volume) is None
    np.testing.assert_allclose(volume.z_positions, load_series(tmp_path).z_positions, atol=1e-4)


def test_gantry_tilt_is_refused_as_by_the_library(scene, tmp_path):
    write_tilted(tmp_path, degrees=8.0)
    problem = _node_problem(tmp_path)
    assert problem == series_problem(load_series(tmp_path))
    assert problem.startswith("gantry tilt of 8.0 degrees: ImagePositionPatient from slice0000.dcm to slice0011.dcm")


def test_a_lost_interior_slice_leaves_a_gap_the_gate_sees(scene, tmp_path):
    paths = write_good(tmp_path)
    paths[6].unlink()  # Slicer's reader stacks the rest evenly; the real positions keep the gap
    problem = _node_problem(tmp_path)
    assert problem is not None and problem.startswith("gap in the series: 5.0 mm between slices 5 and 6"), problem


def test_unreadable_files_count_against_the_series(scene, tmp_path):
    write_every_other_unreadable(tmp_path)
    problem = _node_problem(tmp_path)
    assert problem.startswith("6 unreadable DICOM file(s) in the input")
    assert "6 slice(s) remain at 5.00 mm spacing" in problem


def test_garbage_pixels_are_named_by_file(scene, tmp_path):
    write_pixel_garbage(tmp_path, random.Random(3))
    problem = _node_problem(tmp_path)
    assert problem.startswith("implausible pixel values for CT in 2 slice(s): slice0003.dcm (")
    assert "slice0009.dcm" in problem and "above 3071 HU" in problem


def test_triage_in_the_scene_gives_no_verdict_to_a_damaged_series(scene, tmp_path, tiny_models):
    from PETriageSlicer.loading import load_dicom_folder
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    write_tilted(tmp_path, degrees=8.0)
    node = load_dicom_folder(tmp_path)
    PETriageSceneLogic(scene).run(node, TriageSettings(*tiny_models, device="cpu", cam="none"))
    assert node.GetAttribute("PETriage.verdict") == "not_analysable"
    assert node.GetAttribute("PETriage.reason").startswith("gantry tilt of 8.0 degrees"), node.GetAttribute("PETriage.reason")


def test_a_node_not_from_dicom_gets_the_pixel_checks(scene):
    import slicer

    from PETriageSlicer.geometry import volume_from_node

    voxels = np.full((12, 32, 32), -700, np.int16)
    voxels[4] = 30000  # a slice no CT can hold
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "pasted")
    slicer.util.updateVolumeFromArray(node, voxels)
    volume = volume_from_node(node)
    assert volume.defects == ["implausible pixel values for CT in 1 slice(s): slice 4 (100%) of the pixels "
                              "are above 3071 HU (corrupt pixel data or a wrong rescale?)"]
