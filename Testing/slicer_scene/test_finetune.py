"""Retraining from the module: export labels of several studies, fine-tune a stage in a background
`petriage train` process, register the new version in the model list and triage with it."""
from __future__ import annotations

import csv
import re

import pytest

from support.phantoms import write_phantom


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    monkeypatch.setenv("PETRIAGE_USER_MODELS", str(tmp_path / "user-models"))
    return tmp_path / "user-models"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Five phantom studies, labelled in the scene from their ground truth, exported to one manifest;
    the three with PE also with their clots painted (from the phantom's mask) as a lesion segmentation."""
    from PETriageLib.training.lesion_masks import PE_CODE, read_lesion_mask
    from PETriageSlicer.annotation import (create_annotations, create_lesion_segmentation,
                                           export_training_manifest, set_labels, set_segment_from_array)
    from PETriageSlicer.geometry import volume_from_node
    from PETriageSlicer.loading import load_dicom_folder
    from PETriageSlicer.scene import new_scene

    root = tmp_path_factory.mktemp("finetune")
    scene = new_scene()
    for n, pe in enumerate((True, False, True, False, True)):
        series = write_phantom(root / f"study{n}", seed=40 + n, pe=pe, slices=16)
        with open(series.parent / "labels.csv", newline="") as f:
            truth = [r["label"] for r in csv.DictReader(f)]
        ct = load_dicom_folder(series, scene=scene)
        table = create_annotations(ct)
        for label in ("other", "pe"):
            set_labels(table, [k for k, v in enumerate(truth) if v == label], label)
        seg = None
        if pe:
            seg = create_lesion_segmentation(ct)
            clots = read_lesion_mask(series.parent / "mask.nrrd", volume_from_node(ct)) == PE_CODE
            set_segment_from_array(seg, "pe", clots, ct)
        manifest = export_training_manifest(ct, table, root / "export", segmentation=seg, patient_id=f"P{n}")
    return manifest


def test_fine_tune_registers_a_new_model_that_triages(scene, exported, tiny_models, user_models, tmp_path,
                                                      phantom_series):
    from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings
    from PETriageSlicer.model_list import available_models, model_names, resolve

    logic = PETriageSceneLogic(scene)
    job = logic.fine_tune(str(exported), 1, tiny_models[0], str(tmp_path / "ft1"), epochs=1,
                          extra_args=("--steps-per-epoch", "2", "--batch-size", "4", "--threads", "1",
                                      "--no-augment"))
    assert job.wait(timeout=300) == 0, "\n".join(job.lines[-20:])
    assert job.progress == 1.0  # read from the trainer's progress bar
    # The painted clots of 3 of the 5 studies were used too (lesion-map loss, on by default).
    assert job.command[job.command.index("--mask-loss") + 1] == "1"
    used = [line for line in job.lines if "lesion-map loss (weight 1) on" in line]
    assert used, "\n".join(job.lines[-20:])
    n_masked, n_all = map(int, re.search(r"on (\d+) of (\d+) training slices", used[0]).groups())
    assert 0 < n_masked < n_all
    assert job.result()["best"].endswith("best.pt")
    entry = job.register("site-v1-stage1")
    assert entry["stage"] == 1 and len(entry["sha256"]) == 64
    assert "site-v1-stage1" in model_names(1) and "site-v1-stage1" not in model_names(2)
    listed = [e for e in available_models() if e["name"] == "site-v1-stage1"]
    assert listed and listed[0]["user"] is True
    path, sha = resolve("site-v1-stage1")
    assert path.is_file() and path.is_relative_to(user_models) and sha == entry["sha256"]

    # The registered name works as a stage 1 model of a triage run.
    ct = logic.load_dicom(str(phantom_series))
    nodes = logic.run(ct, TriageSettings("site-v1-stage1", tiny_models[1], device="cpu", cam="none"))
    assert nodes.table.GetNumberOfRows() == ct.GetImageData().GetDimensions()[2]
    assert not nodes.heatmaps

    # A changed file no longer matches its model list entry and is refused.
    from PETriageLib.errors import CheckpointError
    from PETriageSlicer.model_list import verified_path

    with open(path, "ab") as f:
        f.write(b"0")
    with pytest.raises(CheckpointError, match="SHA256"):
        verified_path("site-v1-stage1")


def test_fine_tune_can_be_cancelled(exported, tiny_models, tmp_path, user_models):
    from PETriageSlicer.finetune import FineTuneJob
    from PETriageSlicer.model_list import available_models

    job = FineTuneJob(exported, 2, tiny_models[1], tmp_path / "ft2", epochs=50).start()
    assert job.running
    job.cancel()
    assert not job.running and job.cancelled and job.returncode != 0
    with pytest.raises(RuntimeError, match="failed"):
        job.result()
    assert [e for e in available_models() if e["user"]] == []  # nothing registered
    assert not (tmp_path / "ft2" / "best.pt").exists()


def test_lesion_loss_only_where_lesions_were_painted(exported, tiny_models, tmp_path):
    from PETriageSlicer.finetune import FineTuneJob, painted_lesions

    assert painted_lesions(exported) == 3
    plain = FineTuneJob(exported, 2, tiny_models[1], tmp_path / "a", lesion_loss=0.0)
    assert "--mask-loss" not in plain.command and plain.command[-2:] == ["--epochs", "3"]
    weighted = FineTuneJob(exported, 2, tiny_models[1], tmp_path / "b", lesion_loss=0.5)
    assert weighted.command[-2:] == ["--mask-loss", "0.5"]
