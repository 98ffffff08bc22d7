"""The Python example of docs/segmentation.md runs as written and writes a loadable checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch
from support.docs_examples import python_block

from PETriageLib.models.seg_checkpoint import load_seg_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_docs_example_runs(tmp_path, monkeypatch, capsys) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(tmp_path, monkeypatch, capsys)
    finally:
        torch.set_num_threads(before)


def _run(tmp_path, monkeypatch, capsys) -> None:
    code = python_block(REPO / "docs" / "segmentation.md", "From Python")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/segmentation.md example", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("| Model | Dice (%)") and "| cpmn (no IFD) |" in printed
    _, meta = load_seg_checkpoint(tmp_path / "cpmn.pt")
    assert meta["task"] == "cross_phase"
