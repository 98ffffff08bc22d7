"""The suites mirror the library's folders, and share code only through conftest fixtures and
Testing/support, never by importing another test module or a conftest (which Python resolves to
whichever conftest it met first)."""
from __future__ import annotations

import ast
from pathlib import Path

TESTING = Path(__file__).resolve().parent
LIB = TESTING.parent / "PETriageLib"
OTHER_SUITES = {"support", "slicer_scene", "slicer_module"}  # helpers; the Slicer module's suites


def test_suites_mirror_the_library_folders():
    suites = {p.name for p in TESTING.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    folders = {p.name for p in LIB.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert suites - OTHER_SUITES <= folders
    assert not {f for f in folders if not (TESTING / f).is_dir()}  # every library folder has its suite


def test_test_file_names_are_unique():
    """pytest imports test files by their base name (no __init__.py here): two of one name stop
    the collection of the whole suite."""
    from collections import Counter

    names = Counter(p.name for p in TESTING.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1]


def test_no_test_imports_another_test_module_or_a_conftest():
    offenders = []
    for path in TESTING.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(TESTING)}: {n}" for n in names
                          if n.split(".")[0] == "conftest" or n.split(".")[-1].startswith("test_")]
    assert not offenders, offenders
