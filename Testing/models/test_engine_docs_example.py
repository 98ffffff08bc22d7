"""The ONNX Runtime example of docs/benchmarks.md runs as written on the shipped stage 1 model."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def test_engine_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("PETRIAGE_ENGINE_CACHE", str(tmp_path))
    text = DOC.read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Inference engines"):], re.S).group(1)
    exec(compile(code, "docs/benchmarks.md example", "exec"), {})
    assert capsys.readouterr().out.strip() == "onnxruntime-fp32 False (4,)"
    assert len(list(tmp_path.glob("*-224px-*-fp32.onnx"))) == 1
