"""The panel's patient-rule choice on a real MRML scene: by default the pair's registered rule
decides the verdict stored on the results table; "slice" gives the models' own slice points."""
from __future__ import annotations

import json

import pytest

from PETriageLib.models.checkpoint import file_sha256
from PETriageLib.models.patient_rules import PatientRule, register_patient_rule

CARD = {"intended_use": "tests", "training_data": "none", "limits": "none", "metrics": {}}


@pytest.fixture
def registered_rule(tiny_models, tmp_path, monkeypatch):
    register_patient_rule(PatientRule(0.25, 0.65, 2, name="scene_rule", target_sensitivity=0.95),
                          file_sha256(tiny_models[0]), file_sha256(tiny_models[1]), CARD, tmp_path)
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(tmp_path))


@pytest.mark.parametrize("point, expected", [("patient", (0.25, 0.65, 2)), ("slice", (0.0, 0.5, 1))])
def test_operating_point_setting_reaches_the_verdict(scene, tiny_models, phantom_series_dir, registered_rule,
                                                     point, expected):
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series_dir))
    settings = TriageSettings(*tiny_models, device="cpu", cam="none", domain_check="off", operating_point=point)
    nodes = logic.run(ct, settings)
    verdict = json.loads(nodes.table.GetAttribute("PETriage.result"))
    assert (verdict["threshold_disease"], verdict["threshold_pe"], verdict["min_run"]) == expected
