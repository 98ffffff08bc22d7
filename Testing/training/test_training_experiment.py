"""`petriage experiment --size tiny` on one variant: trains both stages, writes the comparison tables."""
from __future__ import annotations

import json

from PETriageLib.cli import main
from PETriageLib.models import list_models
from PETriageLib.training.experiment import SIZES, variant_config, variants


def test_variants_cover_the_paper_comparison() -> None:
    vs = variants()
    backbone = {(v.architecture, v.crop) for v in vs if v.table == "backbone"}
    assert backbone == {(a, c) for a in ("resnet50", "drn_d22", "efficientnet_b5", "cbamdrn_d22")
                        for c in ("fixed", "dynamic")}
    assert {v.windows for v in vs if v.table == "windows"} == {("lung",), ("vascular",),
                                                               ("vascular", "lung", "mediastinal")}
    assert all(v.architecture in list_models() for v in vs)
    cfg = variant_config(vs[0], 2, SIZES["small"], seed=3)
    assert cfg.stage == 2 and cfg.model_config == {} and cfg.crop == "fixed"  # torchvision: no width


def test_tiny_experiment_runs_and_writes_tables(tmp_path, capsys) -> None:
    out = tmp_path / "exp"
    assert main(["-q", "experiment", "--out", str(out), "--size", "tiny", "--only", "cbamdrn_d22-dynamic"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"stage1/cbamdrn_d22-dynamic", "stage2/cbamdrn_d22-dynamic"}
    for key, res in results.items():
        rep = res["report"]
        assert rep["accuracy"]["total"] == sum(c["total"] for c in rep["per_class"].values()) > 0
    md = (out / "results.md").read_text()
    assert "## Stage 1: backbones, fixed vs dynamic crop" in md
    assert "| CBAMDRN-D-22, dynamic crop (DWL) | " + results["stage1/cbamdrn_d22-dynamic"]["report"]["accuracy"]["text"] in md
    assert "## Stage 1: backbones" in capsys.readouterr().out
    # a second run reuses the finished variants instead of training again
    stamp = (out / "stage1" / "cbamdrn_d22-dynamic" / "result.json").stat().st_mtime_ns
    assert main(["-q", "experiment", "--out", str(out), "--size", "tiny", "--only", "cbamdrn_d22-dynamic"]) == 0
    assert (out / "stage1" / "cbamdrn_d22-dynamic" / "result.json").stat().st_mtime_ns == stamp
