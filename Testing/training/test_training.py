"""Training on a tiny generated phantom data set: manifest, cache, loss falls, checkpoint meta,
fine-tuning, evaluation report, RSPECT import. Resume after SIGKILL: test_training_resume.py."""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from PETriageLib.training.cache import SliceDataset, cache_sources, config_dir
from PETriageLib.training.config import TrainConfig
from PETriageLib.training.manifest import ManifestError, load_manifest, read_slice_labels
from PETriageLib.training.pipeline import train_from_manifest

from support.tiny_training import TINY, make_tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("phantoms"))


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory) -> dict:
    """Stage 1 and stage 2 trained for a few steps (shared by the tests below)."""
    out = tmp_path_factory.mktemp("runs")
    common = dict(TINY, epochs=3, steps_per_epoch=4, lr=3e-3, scheduler="constant", augment=False, patience=5)
    r1 = train_from_manifest(TrainConfig(stage=1, **common), tiny_dataset, out / "s1", out / "cache",
                             out / "splits.json", ratios=(4, 2, 2))
    r2 = train_from_manifest(TrainConfig(stage=2, **common), tiny_dataset, out / "s2", out / "cache",
                             out / "splits.json", ratios=(4, 2, 2))
    return {"out": out, "s1": r1, "s2": r2, "manifest": tiny_dataset, "common": common}


def test_phantom_manifest_and_labels(tiny_dataset) -> None:
    sources = load_manifest(tiny_dataset)
    assert len(sources) == 8 and all(s.kind == "dicom" and s.paths[0].is_dir() for s in sources)
    src = sources[0]
    rows = list(csv.DictReader(open(src.labels_csv)))
    labels = read_slice_labels(src.labels_csv, [r["instance_uid"] for r in rows], [])
    assert labels == [r["label"] for r in rows]
    with pytest.raises(ManifestError, match="no label by instance_uid"):
        read_slice_labels(src.labels_csv, ["1.2.3"] + [r["instance_uid"] for r in rows[1:]], [])


def test_own_manifest_errors_name_file_and_row(tmp_path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("patient_id,kind,path,labels\nP1,scan,x,y\n")
    with pytest.raises(ManifestError, match=r"m\.csv:2: kind must be one of"):
        load_manifest(bad)


def test_cache_is_reused_and_keyed_by_config(tiny_dataset, tmp_path) -> None:
    from PETriageLib.preprocess.slices import PreprocessConfig

    sources = load_manifest(tiny_dataset)[:2]
    cfg = PreprocessConfig(["vascular", "lung"], input_size=64)
    first = cache_sources(sources, cfg, tmp_path)
    files = sorted(config_dir(tmp_path, cfg.to_dict()).glob("*/images.npy"))
    stamps = [f.stat().st_mtime_ns for f in files]
    t = time.perf_counter()
    again = cache_sources(sources, cfg, tmp_path)
    assert time.perf_counter() - t < 5.0  # memmaps opened, no DICOM read (reading takes far longer)
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert first[0].images.shape == (16, 2, 64, 64) and first[0].images.dtype == np.float16
    assert np.array_equal(np.asarray(first[1].images), np.asarray(again[1].images))
    other = PreprocessConfig(["lung"], input_size=64)
    assert config_dir(tmp_path, other.to_dict()) != config_dir(tmp_path, cfg.to_dict())
    assert cache_sources(sources[:1], other, tmp_path)[0].images.shape == (16, 1, 64, 64)


def test_stage_datasets_follow_the_labels(tiny_run) -> None:
    from PETriageLib.preprocess.slices import PreprocessConfig

    cached = cache_sources(load_manifest(tiny_run["manifest"]), PreprocessConfig(["vascular", "lung"], 64),
                           tiny_run["out"] / "cache")
    s1, s2 = SliceDataset(cached, 1), SliceDataset(cached, 2)
    lung = sum(int(c.has_lung.sum()) for c in cached)
    diseased = sum(int((c.has_lung & (np.asarray(c.labels) != "wnl")).sum()) for c in cached)
    pe = sum(int((c.has_lung & (np.asarray(c.labels) == "pe")).sum()) for c in cached)
    assert len(s1) == lung and s1.class_counts()[1] == diseased
    assert len(s2) == diseased and s2.class_counts()[1] == pe > 0


def test_training_loss_falls_and_best_checkpoint_has_threshold(tiny_run) -> None:
    from PETriageLib.models.checkpoint import load_checkpoint

    for key, classes in (("s1", ["wnl", "disease"]), ("s2", ["other", "pe"])):
        hist = tiny_run[key].history
        assert len(hist) == 3
        assert hist[-1]["train_loss"] < hist[0]["train_loss"]
        model, meta = load_checkpoint(tiny_run[key].best_path)
        assert meta["class_names"] == classes
        assert meta["threshold"] == pytest.approx(tiny_run[key].threshold)
        assert 0.0 <= meta["threshold"] <= 1.0
        assert meta["input_size"] == 64 and [w["name"] for w in meta["windows"]] == ["vascular", "lung"]
        assert meta["training"]["stage"] == (1 if key == "s1" else 2)
    splits = json.loads((tiny_run["out"] / "splits.json").read_text())
    assert not set(splits["train"]) & set(splits["val"])


def test_training_stores_the_domain_check(tiny_run) -> None:
    """Each best.pt carries the feature statistics of every training slice with lung (fewer than the
    6000 sampled at most) and a threshold from the validation series."""
    from PETriageLib.triage.stages import load_stage
    from PETriageLib.preprocess.slices import PreprocessConfig

    splits = json.loads((tiny_run["out"] / "splits.json").read_text())
    sources = cache_sources(load_manifest(tiny_run["manifest"]), PreprocessConfig(["vascular", "lung"], 64),
                            tiny_run["out"] / "cache")
    cached = {c.patient_id: c for c in sources}
    lung = sum(int(cached[p].has_lung.sum()) for p in splits["train"])
    for number, key in ((1, "s1"), (2, "s2")):
        stage = load_stage(number, tiny_run[key].best_path)
        info = stage.meta["domain"]
        assert info["train_slices"] == lung and info["train_series"] == len(splits["train"])
        assert info["val_series"] == len(splits["val"])
        assert stage.domain.threshold == pytest.approx(1.5 * info["val_scores"]["max"], rel=1e-3)
        width = stage.model.fc.in_features
        assert stage.domain.mean.shape == (width,) and stage.domain.precision.shape == (width, width)
    # a cap on the training slices is met exactly (a seeded draw over all of them)
    from PETriageLib.training.domain_fit import fit_from_sources

    capped = fit_from_sources(stage.model, [cached[p] for p in splits["train"]], [cached[p] for p in splits["val"]],
                              max_train_slices=10)
    assert capped.info["train_slices"] == 10 and capped.info["val_series"] == len(splits["val"])
    # the same command again trains nothing new and leaves best.pt, and so its SHA256, as it was
    from PETriageLib.models.checkpoint import file_sha256

    sha = file_sha256(tiny_run["s1"].best_path)
    out = tiny_run["out"]
    again = train_from_manifest(TrainConfig(stage=1, **tiny_run["common"]), tiny_run["manifest"], out / "s1",
                                out / "cache", out / "splits.json", ratios=(4, 2, 2))
    assert again.best_path == tiny_run["s1"].best_path and file_sha256(again.best_path) == sha


def test_fit_domain_cli_gives_an_old_checkpoint_its_check(tiny_run, tmp_path, capsys) -> None:
    """A checkpoint without statistics (as before training stored them) gets them from the command;
    series models trained on the old file still accept the new one (same weights)."""
    from PETriageLib.triage.stages import load_stage
    from PETriageLib.cli import main
    from PETriageLib.models.checkpoint import file_sha256, read_checkpoint, write_checkpoint
    from PETriageLib.models.series_checkpoint import load_series_model, save_series_model

    old = tmp_path / "old.pt"
    data = read_checkpoint(tiny_run["s1"].best_path)
    del data["domain"], data["meta"]["domain"]
    write_checkpoint(old, data)
    assert load_stage(1, old).domain is None
    new = tmp_path / "new.pt"
    assert main(["-q", "fit-domain", str(old), "--manifest", str(tiny_run["manifest"]), "--splits",
                 str(tiny_run["out"] / "splits.json"), "--cache", str(tiny_run["out"] / "cache"), "--out", str(new),
                 "--max-train-series", "2", "--margin", "2", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    stage = load_stage(1, new)
    assert printed["train_series"] == stage.meta["domain"]["train_series"] == 2
    assert stage.domain.threshold == pytest.approx(2 * printed["val_scores"]["max"], rel=1e-3)
    assert stage.identities() == [file_sha256(new), file_sha256(old)]
    from PETriageLib.errors import CheckpointError
    from PETriageLib.models.series_nets import SliceRefiner

    s2 = load_stage(2, tiny_run["s2"].best_path)
    save_series_model(tmp_path / "r.pt", SliceRefiner(2, 4, 0.0), {
        "type": "slice_refiner", "features": "scores", "in_features": 2, "hidden": 4, "dropout": 0.0,
        "stages": [{"sha256": file_sha256(old), "path": str(old)}, {"sha256": s2.sha256, "path": s2.path}]})
    model, _ = load_series_model(tmp_path / "r.pt", "slice_refiner", [stage.identities(), s2.identities()])
    assert isinstance(model, SliceRefiner)
    with pytest.raises(CheckpointError, match="other stage models"):
        load_series_model(tmp_path / "r.pt", "slice_refiner", [[file_sha256(new)], s2.identities()])


def test_fine_tuning_starts_from_the_checkpoint(tiny_run) -> None:
    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.training.train import build_for_training, fine_tune_config

    best = tiny_run["s1"].best_path
    cfg = fine_tune_config(best, epochs=1, steps_per_epoch=2, threads=1, progress=False, augment=False)
    assert cfg.stage == 1 and cfg.input_size == 64 and cfg.model_config["width"] == 0.125
    start = build_for_training(cfg)
    ref, _ = load_checkpoint(best)
    for a, b in zip(start.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    res = train_from_manifest(cfg, tiny_run["manifest"], tiny_run["out"] / "ft", tiny_run["out"] / "cache",
                              tiny_run["out"] / "splits.json")
    assert load_checkpoint(res.best_path)[1]["training"]["settings"]["init_from"] == str(best)


def test_fine_tuning_at_a_larger_input_size(tiny_run) -> None:
    from PETriageLib.errors import CheckpointError
    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.training.train import build_for_training, fine_tune_config

    best = tiny_run["s1"].best_path
    cfg = fine_tune_config(best, input_size=80, epochs=1, steps_per_epoch=2, threads=1, progress=False,
                           augment=False)
    res = train_from_manifest(cfg, tiny_run["manifest"], tiny_run["out"] / "ft80", tiny_run["out"] / "cache",
                              tiny_run["out"] / "splits.json")
    model, meta = load_checkpoint(res.best_path)
    assert meta["input_size"] == 80 and meta["training"]["settings"]["init_from"] == str(best)
    assert model(torch.zeros(2, 2, 80, 80)).shape == (2, 1)
    other_windows = fine_tune_config(best, windows=["lung", "mediastinal"])
    with pytest.raises(CheckpointError, match="trained with windows"):
        build_for_training(other_windows)


def test_fine_tuning_with_slice_context(tiny_run) -> None:
    """2D checkpoint -> 2.5D run: starts as the 2D model, trains on 3-slice inputs, evaluates."""
    from PETriageLib.errors import CheckpointError
    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.training.evaluate import stage_probs
    from PETriageLib.training.train import build_for_training, fine_tune_config, with_context

    best = tiny_run["s1"].best_path
    cfg = fine_tune_config(best, context=1, epochs=1, steps_per_epoch=2, threads=1, progress=False, augment=True)
    assert cfg.model_config["context"] == 1 and cfg.preprocess_dict()["context"] == 1
    assert cfg.channel_windows() == ["vascular"] * 3 + ["lung"] * 3
    start, (ref, _) = build_for_training(cfg).eval(), load_checkpoint(best)
    x = torch.randn(3, 6, 64, 64)
    assert torch.allclose(start(x), ref(x[:, [1, 4]]), atol=1e-5)  # the neighbours start with zero weight
    res = train_from_manifest(cfg, tiny_run["manifest"], tiny_run["out"] / "ctx", tiny_run["out"] / "cache",
                              tiny_run["out"] / "splits.json")
    model, meta = load_checkpoint(res.best_path)
    assert meta["config"]["context"] == 1 and model.in_channels == 6
    _, cached, probs = stage_probs(res.best_path, tiny_run["manifest"], tiny_run["out"] / "cache",
                                   tiny_run["out"] / "splits.json", "val")
    assert cached[0].images.shape[1] == 6 and len(probs[0]) == len(cached[0].labels)
    with pytest.raises(CheckpointError, match="cannot fine-tune a model with 1 slice"):
        with_context(model, 0)
    with pytest.raises(ValueError, match="does not take \\['context'\\]"):  # only the DRN family has branches
        build_for_training(TrainConfig(architecture="resnet50", model_config={"context": 1}))


def test_bf16_training_on_the_cpu_survives_sizes_that_crashed_channels_last(tiny_run) -> None:
    """torch 2.14.1 corrupted the heap in the CPU backward of a 1x1 stride-2 convolution with 8
    input channels in channels_last at some map sizes (160 px here); training now stays in the
    default layout on the CPU. In a subprocess, so a crash fails this test instead of pytest."""
    import subprocess
    import sys

    out = tiny_run["out"] / "bf16-160"
    cmd = [sys.executable, "-c", "from PETriageLib.cli import main; raise SystemExit(main())", "-q", "train",
           "--manifest", str(tiny_run["manifest"]), "--stage", "1", "--out", str(out),
           "--splits", str(tiny_run["out"] / "splits.json"), "--cache", str(tiny_run["out"] / "cache"),
           "--width", "0.125", "--input-size", "160", "--amp", "bf16", "--batch-size", "8", "--epochs", "1",
           "--steps-per-epoch", "3", "--threads", "1", "--no-progress", "--no-augment"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "best.pt").is_file()


def test_cli_fine_tuning_keeps_its_defaults_unless_given(tiny_run) -> None:
    import argparse

    from PETriageLib.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    base = ["train", "--manifest", "m.csv", "--stage", "1", "--out", "o"]
    fresh = train_cli.config_from_args(parser.parse_args(base))
    assert (fresh.lr, fresh.scheduler, fresh.epochs, fresh.init_from) == (1e-3, "onecycle", 10, None)
    best = str(tiny_run["s1"].best_path)
    tuned = train_cli.config_from_args(parser.parse_args(base + ["--init-from", best]))
    assert (tuned.lr, tuned.scheduler, tuned.epochs, tuned.init_from) == (1e-4, "cosine", 3, best)
    assert tuned.model_config["width"] == 0.125 and tuned.input_size == 64  # from the checkpoint, not the CLI
    given = train_cli.config_from_args(parser.parse_args(base + ["--init-from", best, "--lr", "5e-4", "--epochs", "2",
                                                                  "--input-size", "96"]))
    assert (given.lr, given.scheduler, given.epochs, given.input_size) == (5e-4, "cosine", 2, 96)
    assert fresh.input_size == 128
    assert "context" not in tuned.model_config and "context" not in fresh.model_config
    wide = train_cli.config_from_args(parser.parse_args(base + ["--init-from", best, "--context", "1"]))
    assert wide.model_config["context"] == 1 and wide.model_config["width"] == 0.125
    assert train_cli.config_from_args(parser.parse_args(base + ["--context", "2"])).model_config["context"] == 2


def test_evaluate_writes_paper_tables(tiny_run) -> None:
    from PETriageLib.training.evaluate import evaluate_cascade

    out = tiny_run["out"] / "eval"
    rep = evaluate_cascade(tiny_run["s1"].best_path, tiny_run["s2"].best_path, tiny_run["manifest"], out,
                           tiny_run["out"] / "cache", tiny_run["out"] / "splits.json", "test", n_boot=50)
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "roc_stage1.png", "roc_stage2.png",
                                               "roc_patients.png"}
    test_ids = json.loads((tiny_run["out"] / "splits.json").read_text())["test"]
    assert sorted(r["patient_id"] for r in rep["patients"]) == sorted(test_ids)
    cm = np.array(rep["stage1"]["confusion_matrix"]["rows_true_cols_pred"])
    assert cm.sum() == rep["stage1"]["n"] == rep["stage1"]["accuracy"]["total"]
    md = (out / "report.md").read_text()
    assert "| Model | Accuracy | WNL sensitivity | Disease sensitivity | AUROC (95% CI) |" in md
    assert "| Model | Accuracy | Other sensitivity | PE sensitivity | AUROC (95% CI) |" in md
    assert "| PE (sensitivity) |" in md
    assert rep["stage1"]["accuracy"]["text"] in md
    # Per-slice CSV: every slice of the split once, agreeing with the tables.
    with open(out / "slices.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(rep["stage1"]["confusion_matrix"]["rows_true_cols_pred"][0]) + \
        sum(rep["stage1"]["confusion_matrix"]["rows_true_cols_pred"][1]) + sum(r["has_lung"] == "0" for r in rows)
    wnl = [r for r in rows if r["has_lung"] == "1" and r["label"] == "wnl"]
    assert rep["stage1"]["per_class"]["wnl"]["correct"] == sum(r["passes_stage1"] == "0" for r in wnl)
    for r in rows:
        assert (r["passes_stage1"] == "1") == (r["has_lung"] == "1" and float(r["p_stage1"]) >= rep["stage1"]["threshold"] - 1e-5)
    # Patient PE score: each patient's highest p1 * p2 on a slice with lung, ranked against the labels.
    from sklearn.metrics import roc_auc_score

    best = {}
    for r in rows:
        if r["has_lung"] == "1":
            best[r["patient_id"]] = max(best.get(r["patient_id"], 0.0), float(r["p_stage1"]) * float(r["p_stage2"]))
    pids = sorted(best)
    labels = {r["patient_id"]: r["label"] for r in rep["patients"]}
    y_pat = [labels[pid] == "pe" for pid in pids]
    assert 0 < sum(y_pat) < len(y_pat)
    assert rep["patient_pe_auroc"]["auroc"] == pytest.approx(roc_auc_score(y_pat, [best[p] for p in pids]), abs=0.02)
    assert rep["patient_pe_auroc"]["ci_low"] <= rep["patient_pe_auroc"]["auroc"] <= rep["patient_pe_auroc"]["ci_high"]
    assert f"AUROC (95% CI) {rep['patient_pe_auroc']['auroc']:.3f} (" in md
    # Phantoms have lesion masks: stage 1 sensitivity by lesion area covers every diseased slice.
    counted = lambda texts: sum(int(text.split("/")[1].rstrip(")")) for text in texts)  # noqa: E731  "50.0% (1/2)" -> 2
    by_area = rep["by_lesion_area"]["stage1"]
    assert counted(text for _, text in by_area) == rep["stage1"]["per_class"]["disease"]["total"]
    assert "## Slices found, by lesion area on the slice" in md
    # Which findings limit each stage: the rows split the same slices, and each AUROC is recomputed here
    # from slices.csv and the masks (PE-only slices of a bin against every WNL slice with lung).
    by_finding, other_rows = rep["by_lesion_area"]["stage1_by_finding"], rep["by_lesion_area"]["stage2_other"]
    assert counted(r["found"] for r in by_finding) == rep["stage1"]["per_class"]["disease"]["total"]
    assert counted(r["found"] for r in other_rows) == rep["stage2"]["per_class"]["other"]["total"]
    assert "| Stage 1: diseased slices | Lesion area | Passed stage 1 | AUROC against WNL slices |" in md
    assert "| Stage 2: diseased slices | Lesion area | Kept out of PE | AUROC against PE slices |" in md
    from PETriageLib.training.lesion_size import AREA_BINS_MM2, slice_lesion_areas

    sources = {s.patient_id: s for s in load_manifest(tiny_run["manifest"]) if s.patient_id in test_ids}
    areas = {pid: slice_lesion_areas(src) for pid, src in sources.items()}
    lung_rows = [r for r in rows if r["has_lung"] == "1"]
    clot = np.array([areas[r["patient_id"]][int(r["slice_index"])] for r in lung_rows])
    p1 = np.array([float(r["p_stage1"]) for r in lung_rows])
    is_wnl = np.array([r["label"] == "wnl" for r in lung_rows])
    pe_only = ~is_wnl & (clot[:, 1] == 0)
    bins = [(lo, hi) for lo, hi in zip(AREA_BINS_MM2[:-1], AREA_BINS_MM2[1:])
            if (pe_only & (clot[:, 0] > lo) & (clot[:, 0] < hi)).any()]  # no clot lies on a bin edge here
    pe_rows = [r for r in by_finding if r["group"].startswith("PE only")]
    assert len(pe_rows) == len(bins) >= 1
    for row, (lo, hi) in zip(pe_rows, bins):
        sel = pe_only & (clot[:, 0] > lo) & (clot[:, 0] < hi)
        expected = roc_auc_score(np.r_[np.zeros(is_wnl.sum()), np.ones(sel.sum())], np.r_[p1[is_wnl], p1[sel]])
        assert row["auroc"] == pytest.approx(expected, abs=1e-4), row
    # Operating points: the first is the checkpoint's own (the table above); 0.5 recounted from slices.csv.
    for stage in ("stage1", "stage2"):
        first, half = rep["operating_points"][stage]
        assert first["threshold"] == rep[stage]["threshold"] and first["accuracy"] == rep[stage]["accuracy"]["text"]
        assert first["accuracy"] in md and half["threshold"] == 0.5
    lung = [r for r in rows if r["has_lung"] == "1"]
    right = sum((float(r["p_stage1"]) >= 0.5) == (r["label"] != "wnl") for r in lung)
    assert rep["operating_points"]["stage1"][1]["accuracy"].endswith(f"({right}/{len(lung)})")
    # Domain check: each series scored as triage scores it (there from fp32 inputs, here from the
    # fp16 cache), and the count triage would refuse
    from PETriageLib.triage.cascade import build_cascade
    from PETriageLib.ingest.load import load_series

    dom = rep["domain_check"]
    scores = [r["domain_score"] for r in rep["patients"]]
    assert dom["series"] == len(scores) and dom["max"] == pytest.approx(max(scores), abs=0.01)
    assert dom["refused"] == sum(x > dom["threshold"] for x in scores)
    assert f"triage would refuse {dom['refused']} of {dom['series']} series" in md
    first = rep["patients"][0]
    triaged = build_cascade(tiny_run["s1"].best_path, tiny_run["s2"].best_path, device="cpu",
                                       domain_check="warn").run(load_series(sources[first["patient_id"]].paths[0]))
    assert triaged.domain.score == pytest.approx(first["domain_score"], rel=0.02)


def test_operating_point_known_case() -> None:
    from PETriageLib.training.metrics import operating_point

    y = [0, 0, 0, 1, 1]
    p = [0.1, 0.6, 0.5, 0.5, 0.9]
    assert operating_point(y, p, 0.5, ["wnl", "disease"]) == {
        "threshold": 0.5, "accuracy": "60.0% (3/5)", "wnl": "33.3% (1/3)", "disease": "100.0% (2/2)"}
    assert operating_point(y, p, 0.95, ["wnl", "disease"])["accuracy"] == "60.0% (3/5)"


def test_sensitivity_by_area_bins_known_case() -> None:
    from PETriageLib.training.lesion_size import sensitivity_by_area

    area = [5, 19.9, 20, 99, 150, 600, 0]
    found = [0, 1, 1, 1, 0, 1, 1]
    assert sensitivity_by_area(area, found) == [("0-20 mm^2", "50.0% (1/2)"), ("20-100 mm^2", "100.0% (2/2)"),
                                                ("100-500 mm^2", "0.0% (0/1)"), (">= 500 mm^2", "100.0% (1/1)")]


def test_separation_by_area_known_case() -> None:
    from PETriageLib.training.lesion_size import separation_by_area

    reference = [0.1, 0.2, 0.3, 0.4]
    # 0-20 mm^2: 0.25 beats 2 of 4 reference slices, 0.45 all 4 -> (0.5 + 1.0) / 2; 20-100: 0.3 beats 2, ties 1.
    rows = separation_by_area("PE only", [10, 15, 50, 0], [1, 0, 1, 1], [0.25, 0.45, 0.3, 0.9], reference)
    assert rows == [{"group": "PE only", "area": "0-20 mm^2", "found": "50.0% (1/2)", "auroc": 0.75},
                    {"group": "PE only", "area": "20-100 mm^2", "found": "100.0% (1/1)", "auroc": 0.625}]
    assert separation_by_area("x", [600], [0], [0.5], [])[0]["auroc"] is None


def test_rspect_import(tiny_dataset, tmp_path) -> None:
    from PETriageLib.training.rspect import import_rspect

    src = load_manifest(tiny_dataset)[0]
    rows = list(csv.DictReader(open(src.labels_csv)))
    root = tmp_path / "train"
    series = root / "STUDY1" / "SERIES1"
    series.parent.mkdir(parents=True)
    os.symlink(src.paths[0], series)
    train_csv = tmp_path / "train.csv"
    with open(train_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "pe_present_on_image",
                    "negative_exam_for_pe"])
        for n, r in enumerate(rows):
            w.writerow(["STUDY1", "SERIES1", r["instance_uid"], int(n == 5), 0])
    sources = load_manifest(import_rspect(train_csv, root, tmp_path / "imported"))
    assert len(sources) == 1 and sources[0].patient_id == "STUDY1" and sources[0].patient_label == "pe"
    labels = read_slice_labels(sources[0].labels_csv, [r["instance_uid"] for r in rows], [])
    assert labels == ["pe" if n == 5 else "wnl" for n in range(len(rows))]


def test_augment_identity_determinism_and_air_fill() -> None:
    from PETriageLib.training.augment import AugmentConfig, augment_batch
    from PETriageLib.preprocess.windows import get_window

    x = torch.rand(3, 2, 32, 32) * 2 - 1
    wins = ["vascular", "lung"]
    none = AugmentConfig(rotation_deg=0, translate=0, zoom_min=1, zoom_max=1, hflip=0, vflip=0, hu_noise=0, hu_shift=0)
    assert torch.allclose(augment_batch(x, wins, none, torch.Generator().manual_seed(0)), x, atol=1e-5)
    flip = AugmentConfig(**{**none.to_dict(), "hflip": 1.0})
    assert torch.allclose(augment_batch(x, wins, flip, torch.Generator().manual_seed(0)), x.flip(-1), atol=1e-5)
    full = AugmentConfig()
    a = augment_batch(x, wins, full, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment_batch(x, wins, full, torch.Generator().manual_seed(5)))
    assert not torch.allclose(a, x) and a.min() >= -1 and a.max() <= 1
    # zoomed far out, the border is air (-1024 HU) in each window's scale
    out = AugmentConfig(**{**none.to_dict(), "zoom_min": 0.5, "zoom_max": 0.5})
    z = augment_batch(x, wins, out, torch.Generator().manual_seed(0))
    for c, w in enumerate(wins):
        assert torch.allclose(z[:, c, 0, 0], torch.tensor(float(get_window(w).apply(-1024.0))), atol=1e-5)


def test_evaluate_cli_on_a_whole_manifest(tiny_run, capsys) -> None:
    from PETriageLib.cli import main

    out = tiny_run["out"] / "eval-all"
    assert main(["-q", "evaluate", "--manifest", str(tiny_run["manifest"]), "--split", "all", "--bootstrap", "20",
                 "--stage1", str(tiny_run["s1"].best_path), "--stage2", str(tiny_run["s2"].best_path),
                 "--cache", str(tiny_run["out"] / "cache"), "--out", str(out), "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["patients"]) == 8  # every patient of the manifest
    printed = capsys.readouterr().out
    assert "## PE per patient" in printed
    # PE patients broken down by their most central clot, read from each phantom's study.json
    from PETriageLib.phantom.findings import PE_LEVELS
    from PETriageLib.training.evaluate import phantom_pe_levels

    levels = phantom_pe_levels(tiny_run["manifest"])
    pe_patients = [r for r in rep["patients"] if r["label"] == "pe"]
    assert pe_patients and set(levels) == {r["patient_id"] for r in pe_patients}
    by_level = rep["patient_tables"]["pe_by_level"]
    assert [lv for lv, _ in by_level] == [lv for lv in PE_LEVELS if lv in levels.values()]
    total = sum(int(text.split("/")[1].rstrip(")")) for _, text in by_level)
    found = sum(int(text.split("(")[1].split("/")[0]) for _, text in by_level)
    assert total == len(pe_patients) and found == sum(r["predicted_pe"] for r in pe_patients)
    assert "| Most central clot | Flagged |" in printed


def test_ship_registers_models_with_card_and_sha(tiny_run, tmp_path, monkeypatch) -> None:
    from PETriageLib.models.checkpoint import file_sha256, load_checkpoint
    from PETriageLib.models.zoo import resolve_model, verify_manifest
    from PETriageLib.training.ship import NAMES, ship

    (tmp_path / "models.json").write_text('{"models": []}')
    monkeypatch.setenv("PETRIAGE_RESOURCES", str(tmp_path))  # a scratch Resources/, not the shipped one
    entries = ship(tiny_run["out"], ("s1", "s2"))
    assert [e["stage"] for e in entries] == [1, 2] and verify_manifest(tmp_path) == []
    for stage, entry in zip((1, 2), entries):
        path, sha = resolve_model(NAMES[stage], tmp_path)
        assert sha == file_sha256(path) == entry["sha256"]
        assert "NOT for clinical use" in entry["card"]["intended_use"]
        assert "synthetic" in entry["card"]["training_data"].lower()
        assert entry["card"]["threshold"] == load_checkpoint(path, sha)[1]["threshold"]
    # "a,b" ships the run with the higher validation AUROC
    from PETriageLib.training.ship import best_by_validation

    runs = [tiny_run["s1"].best_path, tiny_run["s2"].best_path]
    aurocs = [load_checkpoint(p)[1]["training"]["val"]["val_auroc"] for p in runs]
    aurocs = [float("-inf") if a is None else a for a in aurocs]
    assert best_by_validation(runs) == runs[int(aurocs[1] > aurocs[0])]


def test_best_on_split_scores_every_candidate_on_the_same_patients(tiny_run, caplog) -> None:
    """Scored on the validation split itself, the choice and the AUROCs are those the runs stored."""
    import logging
    import re

    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.training.ship import best_on_split

    out = tiny_run["out"]
    other = train_from_manifest(TrainConfig(stage=1, **{**TINY, "seed": 7}, epochs=1, steps_per_epoch=2, lr=3e-3,
                                            scheduler="constant", augment=False),
                                tiny_run["manifest"], out / "s1-other", out / "cache", out / "splits.json")
    runs = [tiny_run["s1"].best_path, other.best_path]
    stored = [load_checkpoint(p)[1]["training"]["val"]["val_auroc"] for p in runs]
    assert None not in stored and stored[0] != stored[1]
    with caplog.at_level(logging.INFO, logger="PETriageLib.training.ship"):
        chosen = best_on_split(runs, 1, tiny_run["manifest"], out / "splits.json", "val", out / "cache")
    assert chosen == runs[int(stored[1] > stored[0])]
    scored = [float(m) for m in re.findall(r"scores AUROC ([0-9.]+) on split val", caplog.text)]
    assert scored == pytest.approx(stored, abs=1e-3)


def test_patient_rule_chosen_registered_and_run_by_triage(tiny_run, tmp_path, monkeypatch, capsys) -> None:
    from PETriageLib.cli import main

    s1, s2 = str(tiny_run["s1"].best_path), str(tiny_run["s2"].best_path)
    ev = tmp_path / "eval"
    assert main(["-q", "evaluate", "--manifest", str(tiny_run["manifest"]), "--split", "all", "--bootstrap", "10",
                 "--stage1", s1, "--stage2", s2, "--cache", str(tiny_run["out"] / "cache"), "--out", str(ev),
                 "--threads", "1"]) == 0
    assert json.loads((ev / "report.json").read_text())["patient_rule"] is None  # none registered yet
    resources = tmp_path / "resources"
    # the same folder twice as validation: pooled, every series counted twice
    assert main(["-q", "patient-rule", "--validation", str(ev), str(ev), "--test", f"again={ev}", "--target", "1.0",
                 "--out", str(tmp_path / "rule"), "--register", "tiny_rule", "--resources", str(resources)]) == 0
    printed = capsys.readouterr().out
    chosen = json.loads((tmp_path / "rule" / "patient_rule.json").read_text())
    assert chosen["validation"]["sensitivity"]["value"] == 1.0  # the target, reached on validation
    # the same folder as a test set scores the same
    val, test = chosen["validation"], chosen["tests"][0]
    assert val["sensitivity"]["total"] == 2 * test["sensitivity"]["total"] > 0
    assert val["specificity"]["correct"] == 2 * test["specificity"]["correct"]
    assert "registered patient rule tiny_rule" in printed and "Wilson 95%" in printed
    rule = chosen["rule"]

    monkeypatch.setenv("PETRIAGE_RESOURCES", str(resources))
    ev2 = tmp_path / "eval-with-rule"
    assert main(["-q", "evaluate", "--manifest", str(tiny_run["manifest"]), "--split", "all", "--bootstrap", "10",
                 "--stage1", s1, "--stage2", s2, "--cache", str(tiny_run["out"] / "cache"), "--out", str(ev2),
                 "--threads", "1"]) == 0
    scored = json.loads((ev2 / "report.json").read_text())["patient_rule"]
    assert scored["sensitivity"] == test["sensitivity"] and scored["specificity"] == test["specificity"]
    assert "at the pair's patient rule" in (ev2 / "report.md").read_text()

    series = load_manifest(tiny_run["manifest"])[0].paths[0]
    out = tmp_path / "triage"
    assert main(["-q", "triage", str(series), "--out", str(out), "--models", s1, s2, "--device", "cpu",
                 "--domain-check", "off", "--cam", "none"]) == 0
    report = json.loads(next(out.rglob("report.json")).read_text())
    opts = report["options"]
    assert opts["patient_rule"] == "tiny_rule" and opts["operating_point"] == "patient"
    assert (opts["threshold_disease"], opts["threshold_pe"], opts["min_run"]) == (
        rule["threshold_disease"], rule["threshold_pe"], rule["min_run"])
