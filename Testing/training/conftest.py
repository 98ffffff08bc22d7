"""Fixtures of the training suites: a small phantom data set with a hand-made split."""
from __future__ import annotations

import json

import pytest

from support.checkpoints import make_checkpoint


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory):
    """12 tiny phantoms with a hand-made split (PE and non-PE in each), untrained stage models."""
    from PETriageLib.training.manifest import load_manifest

    from PETriageLib.phantom.dataset import generate_dataset

    out = tmp_path_factory.mktemp("patient")
    manifest = generate_dataset(out / "data", patients=12, seed=21, matrix=96, slices=16, pe_fraction=0.5,
                                other_fraction=0.7)
    sources = load_manifest(manifest)
    by = {lab: [s.patient_id for s in sources if s.patient_label == lab] for lab in ("pe", "other", "wnl")}
    assert [len(by[k]) for k in ("pe", "other", "wnl")] == [6, 3, 3]
    # every split has PE, other-disease and WNL patients (the slice refiner needs all three labels)
    splits = {"train": by["pe"][:3] + by["other"][:1] + by["wnl"][:1],
              "val": by["pe"][3:5] + by["other"][1:2] + by["wnl"][1:2],
              "test": by["pe"][5:] + by["other"][2:] + by["wnl"][2:]}
    (out / "splits.json").write_text(json.dumps(splits))
    s1 = make_checkpoint(out / "stage1.pt", 1)
    s2 = make_checkpoint(out / "stage2.pt", 2)
    return {"out": out, "manifest": manifest, "splits": out / "splits.json", "s1": s1, "s2": s2,
            "ids": splits, "sources": {s.patient_id: s for s in sources}}
