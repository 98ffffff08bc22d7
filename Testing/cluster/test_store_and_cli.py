"""The store without Ray: a failed series is retried by the next run and only it; manifests;
`petriage screen` in-process and on the Ray cluster."""
from __future__ import annotations

import csv
import shutil
import sqlite3

import pytest
from support.screening_cases import OPTIONS

from PETriageLib.cli import main
from PETriageLib.cluster.run import screen_in_process
from PETriageLib.cluster.sources import manifest_tasks, open_source
from PETriageLib.cluster.store import ResultStore


def test_a_failed_series_is_retried_by_the_next_run_and_only_it(archive, spec, reference, tmp_path):
    for s in ("study0", "study1"):
        shutil.copytree(archive / s, tmp_path / "src" / s)
    tasks = open_source(str(tmp_path / "src"))
    broken = next(t for t in tasks if "study1" in t.files[0])
    hidden = tmp_path / "hidden.dcm"
    shutil.move(broken.files[3], hidden)  # unreadable this time: the series fails, the other is done
    store = ResultStore(tmp_path / "out")
    key, first = screen_in_process(tasks, spec, OPTIONS, store)
    assert (first.counts["done"], first.counts["failed"]) == (1, 1)
    [failed] = [o for o in store.outcomes(key) if o.status == "failed"]
    assert failed.series_uid == broken.series_uid and "hidden" not in failed.entry.reason
    assert broken.files[3].split("/")[-1] in failed.entry.reason  # the error names the missing file
    assert store.finished(key) == {t.series_uid for t in tasks} - {broken.series_uid}

    shutil.move(hidden, broken.files[3])
    key2, second = screen_in_process(tasks, spec, OPTIONS, ResultStore(tmp_path / "out"))
    assert key2 == key and (second.screened, second.already_finished, second.counts["done"]) == (1, 1, 1)
    retried = {o.series_uid: o for o in store.outcomes(key)}[broken.series_uid]
    assert (retried.status, retried.attempts) == ("done", 2)
    assert retried.entry.pe_score == pytest.approx(reference[broken.series_uid].pe_score, abs=1e-5)
    rows = sqlite3.connect(store.path).execute("SELECT COUNT(*) FROM series").fetchone()
    assert rows == (2,)


def test_other_models_are_screened_beside_the_first_ones(archive, spec, tmp_path):
    tasks = [t for t in open_source(str(archive / "study0"))]
    store = ResultStore(tmp_path / "out")
    key, _ = screen_in_process(tasks, spec, OPTIONS, store)
    other = type(spec)(spec.stage1, spec.stage2, device="cpu", threshold_pe=0.9, options=spec.options)
    key2, summary = screen_in_process(tasks, other, OPTIONS, store)
    assert key2 != key and summary.screened == 1 and summary.already_finished == 0


def test_a_manifest_lists_the_series_of_its_folders(archive, tmp_path):
    manifest = tmp_path / "archive.csv"
    manifest.write_text(f"path\n{archive / 'study2'}\n{archive / 'mr'}\n")
    tasks = open_source(str(manifest))
    assert sorted(t.modality for t in tasks) == ["CT", "MR"] and all(t.files for t in tasks)
    manifest.write_text("folder\nx\n")
    with pytest.raises(ValueError, match="archive.csv: a screening manifest needs a 'path' column"):
        manifest_tasks(manifest)
    manifest.write_text("path\nnowhere\n")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        manifest_tasks(manifest)


@pytest.mark.parametrize("where", ["--no-ray", "ray"])
def test_petriage_screen(where, archive, tiny_checkpoints, reference, tmp_path, capsys, request):
    if where == "ray":
        request.getfixturevalue("ray_cluster")  # the CLI joins the cluster this process started
    manifest = tmp_path / "two.csv"
    manifest.write_text(f"path\n{archive / 'study0'}\n{archive / 'mr'}\n")
    args = ["screen", str(manifest), "--out", str(tmp_path / "out"), "--models", *map(str, tiny_checkpoints),
            "--all-slices", "--batch-size", "8", "--inference", "eager", "--top-k", "2", "--no-images",
            "--workers", "2"]
    assert main(args + (["--no-ray"] if where == "--no-ray" else [])) == 0
    said = capsys.readouterr().out
    assert "2 series: 1 done, 1 skipped, 0 failed, 0 finished earlier" in said
    assert ("in-process" if where == "--no-ray" else "2 Ray worker(s)") in said
    rows = list(csv.DictReader((tmp_path / "out" / "worklist.csv").open()))
    assert [(r["rank"], r["verdict"]) for r in rows] == [("1", reference[rows[0]["series_uid"]].verdict),
                                                         ("2", "not_analysable")]
    assert float(rows[0]["pe_score"]) == pytest.approx(reference[rows[0]["series_uid"]].pe_score, abs=1e-5)
    assert main(args + ["--no-ray"]) == 0  # the other path, same store: nothing left to do
    assert "0 screened" in capsys.readouterr().out


def test_a_source_without_series_or_a_missing_one_exits_2(tmp_path, caplog):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no DICOM here")
    assert main(["screen", str(tmp_path / "notes"), "--out", str(tmp_path / "out"), "--no-ray"]) == 2
    assert main(["screen", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--no-ray"]) == 2
    assert "nowhere is neither a DICOMweb URL nor an existing path" in caplog.text


def test_the_python_example_of_docs_scale_runs(ray_cluster, archive, tiny_checkpoints, tmp_path, monkeypatch,
                                               capsys):
    from pathlib import Path

    from support.docs_examples import python_block

    code = python_block(Path(__file__).resolve().parents[2] / "docs" / "scale.md", "From Python")
    code = code.replace('"stage1-name-or.pt"', repr(str(tiny_checkpoints[0]))).replace(
        '"stage2-name-or.pt"', repr(str(tiny_checkpoints[1])))
    shutil.copytree(archive / "study3", tmp_path / "path" / "to" / "archive")
    monkeypatch.chdir(tmp_path)  # relative paths, as written: the actors, elsewhere, still find them
    exec(compile(code, "docs/scale.md example", "exec"), {})
    assert "1 series: 1 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "screened" / "worklist.csv").is_file()
    [report] = (tmp_path / "screened" / "reports").iterdir()
    assert (report / "report.json").is_file()
