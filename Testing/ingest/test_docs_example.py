"""The example of docs/ingest.md ("Damaged input") runs as written on a tilted series."""
from __future__ import annotations

import re
from pathlib import Path

from support.fuzz_series import write_tilted

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def test_damaged_input_example_runs(tmp_path, monkeypatch, capsys):
    text = DOC.read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Damaged input"):], re.S).group(1)
    write_tilted(tmp_path / "path" / "to" / "tilted" / "series")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/ingest.md example", "exec"), {})
    assert capsys.readouterr().out.startswith("gantry tilt of 8.0 degrees: ImagePositionPatient from slice0000.dcm")
