"""The Slicer console examples of the README and docs/slicer.md run as written on slicer-core's real
MRML (paths swapped for a phantom series and a temporary folder), including the first line that
ensures the dependencies."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def python_block(doc: str, heading: str) -> str:
    text = (REPO / doc).read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S).group(1)


@pytest.mark.parametrize("doc, heading", [("README.md", "## In 3D Slicer"),
                                          ("docs/slicer.md", "## Plain Python with slicer-core")])
def test_console_example_runs(doc, heading, scene, phantom_series, tmp_path, monkeypatch, capsys):
    code = python_block(doc, heading)
    assert "PETriageSceneLogic" in code
    code = code.replace('"/data/chest_ct_series"', repr(str(phantom_series)))
    code = code.replace('"/path/to/PETriage/PETriage"', repr(str(REPO / "PETriage")))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, f"{doc} example", "exec"), namespace)
    ct = namespace["ct"]
    assert ct.GetAttribute("PETriage.verdict")  # the run put its verdict on the CT node
    if "save_mrb" in code:
        assert (tmp_path / "triage.mrb").stat().st_size > 0
        # the DICOM export line: every object of a verdict; none for a series refused (no verdict)
        written = [p.name for p in namespace["dicom"].files]
        refused = ct.GetAttribute("PETriage.verdict") == "not_analysable"
        assert (written == []) if refused else ("sr.dcm" in written and (tmp_path / "dicom_out" / "sr.dcm").is_file())
    else:
        assert capsys.readouterr().out.startswith(ct.GetAttribute("PETriage.verdict"))
