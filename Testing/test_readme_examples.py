"""The Python examples of the README and docs/triage.md run as written, on the public API, with
the shipped models (paths swapped for a phantom series and temporary folders)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.docs_examples import python_block

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("doc, heading", [("README.md", "## From Python"), ("docs/triage.md", "## From Python")])
def test_python_examples_run(doc, heading, phantom_series_dir, tmp_path, monkeypatch, capsys):
    code = python_block(REPO / doc, heading)
    assert "from PETriageLib import" in code  # the public API, not module paths
    shutil.copytree(phantom_series_dir, tmp_path / "path" / "to" / "series")
    shutil.copytree(phantom_series_dir, tmp_path / "path" / "to" / "archive" / "one")
    code = code.replace('"stage1-name-or.pt"', '"cbamdrn_d22_demo_stage1"').replace(
        '"stage2-name-or.pt"', '"cbamdrn_d22_demo_stage2"')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{doc} example", "exec"), {})
    assert (tmp_path / "out" / "report.json").is_file() and (tmp_path / "out" / "summary.md").is_file()
    if "screen_sources" in code:
        printed = capsys.readouterr().out
        assert "not_analysable" in printed  # the shipped models refuse a 128 px phantom (domain check)
        assert len(list((tmp_path / "reports").iterdir())) == 1
