"""Screening a folder of generated studies gives a worklist ranked by PE score, each row loadable."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from support.phantoms import write_phantom


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three phantom studies (two with PE, one without) and a single-slice CT that cannot be triaged."""
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("worklist")
    for name, seed, pe in (("a", 21, True), ("b", 22, False), ("c", 23, True)):
        write_phantom(root / name, seed, pe, slices=16)
    (root / "d").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "d" / "CT_small.dcm")
    return root


def test_folder_worklist_is_ranked_by_pe_score(scene, folder, tiny_models):
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.ingest.load import load_series
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.navigation import table_column
    from PETriageSlicer.worklist_table import load_row

    logic = PETriageSceneLogic(scene)
    calls = []
    table = logic.screen_folder(str(folder), TriageSettings(*tiny_models, device="cpu"),
                                progress=lambda d, t, m: calls.append((d, t)))
    assert table.GetNumberOfRows() == 4
    assert calls[-1] == (4, 4)

    # Independent reference: the library's cascade on each study folder.
    cascade = build_cascade(*tiny_models, device="cpu")
    scores = {}
    for name in "abc":
        result = cascade.run(load_series(folder / name / "series"))
        scores[result.volume.metadata["series_uid"]] = result.verdict.pe_score
    expected = sorted(scores, key=lambda uid: -scores[uid])
    assert len(set(scores.values())) == 3  # distinct scores: the order is meaningful

    uids = table_column(table, "series_uid")
    assert uids[:3] == expected
    np.testing.assert_allclose(table_column(table, "pe_score")[:3], [scores[u] for u in expected], atol=1e-6)
    assert table_column(table, "rank") == [1, 2, 3, 4]
    # The single-slice CT cannot be triaged: it is listed last with its reason, not dropped.
    assert table_column(table, "verdict")[3] in ("not_analysable", "error")
    assert table_column(table, "reason")[3]
    assert np.isnan(table_column(table, "pe_score")[3])
    assert set(table_column(table, "source")) == {str(folder)}

    node = load_row(table, 0)
    sh = scene.GetSubjectHierarchyNode()
    assert sh.GetItemUID(sh.GetItemByDataNode(node), "DICOM") == expected[0]
    assert node.GetImageData().GetDimensions()[2] == 16


def test_screening_can_be_cancelled(scene, folder, tiny_models):
    import threading

    from PETriageLib.progress import Cancelled
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        PETriageSceneLogic(scene).screen_folder(str(folder), TriageSettings(*tiny_models, device="cpu"), cancel=cancel)
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0



def test_shipped_models_triage_through_the_scene(scene, phantom_series):
    """The shipped demo models (Resources/models.json, SHA256-checked) run by name in the scene logic."""
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.model_list import available_models
    from PETriageSlicer.navigation import table_column

    shipped = {stage: [e["name"] for e in available_models(stage) if not e["user"]] for stage in (1, 2)}
    if not shipped[1] or not shipped[2]:
        pytest.skip("no shipped stage 1 and stage 2 models in Resources/models.json yet")
    logic = PETriageSceneLogic(scene)
    ct = logic.load_dicom(str(phantom_series))
    nodes = logic.run(ct, TriageSettings(shipped[1][0], shipped[2][0], device="cpu", top_k=2))
    assert nodes.table.GetNumberOfRows() == ct.GetImageData().GetDimensions()[2]
    # the 128 x 128 test phantom is coarser than any the demo models saw: refused by default, with
    # the probabilities in the table; with 'warn' it gets a verdict and Grad-CAM maps
    assert ct.GetAttribute("PETriage.verdict") == "not_analysable"
    assert ct.GetAttribute("PETriage.reason").startswith("the series is unlike the data model")
    assert not nodes.heatmaps and any(table_column(nodes.table, "p_disease"))
    nodes = logic.run(ct, TriageSettings(shipped[1][0], shipped[2][0], device="cpu", top_k=2, domain_check="warn"))
    assert ct.GetAttribute("PETriage.verdict") in ("pe_suspected", "other_disease", "no_finding")
    assert len(nodes.heatmaps) == 2
