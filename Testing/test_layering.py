"""The library's folders are the steps of the data flow; imports only run from a later step to an
earlier one, and the steps never import their consumers. Read from the source with ``ast``
(function-local imports included), so the direction cannot erode unnoticed."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "PETriageLib"
# Each step may import the steps before it (and the shared base), never one after it.
STEPS = ["ingest", "preprocess", "models", "triage", "explain", "reporting", "screening"]
BASE = {"errors", "progress", "atomic", "vocabulary", "heap", ""}  # "" = the package root (__version__, lazy public API)
# Consumers of the steps, each allowed the steps and the consumers listed with it.
CONSUMERS = {"phantom": set(), "training": {"phantom"}, "bench": {"phantom", "training"}, "pacs": set(),
             "cluster": set(), "cli": {"phantom", "training", "bench", "pacs", "cluster"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every PETriageLib module the code of ``module`` imports, at any depth of its code."""
    here = module.split(".")
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "PETriageLib"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "PETriageLib":
                found.add(base)
                # ``from PETriageLib.x import y`` may name a submodule y
                found |= {f"{base}.{a.name}" for a in node.names
                          if (LIB.parent / f"{base}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
    return found


def imports_of(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def foreign_imports_of(path: Path) -> set[str]:
    """Top-level names of what ``path`` imports that PETriageLib must never need (Slicer, Qt, VTK)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names & {"slicer", "PETriageSlicer", "qt", "ctk", "vtk", "PythonQt"}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in LIB.rglob("*.py")}


def part(module: str) -> str:
    """The top-level folder (or base module) of a PETriageLib module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed(src: str, dst: str) -> bool:
    a, b = part(src), part(dst)
    if a == b or b in BASE:
        return True
    if a in BASE:  # the base imports nothing of the steps (the root's public API is lazy)
        return False
    if a in STEPS:
        return b in STEPS and STEPS.index(b) < STEPS.index(a)
    if a in CONSUMERS:
        return b in STEPS or b in CONSUMERS[a]
    return False


def test_every_folder_is_a_known_step_or_consumer():
    folders = {p.name for p in LIB.iterdir() if p.is_dir() and p.name != "__pycache__"}
    files = {p.stem for p in LIB.glob("*.py")} - {"__init__"}
    assert folders == set(STEPS) | set(CONSUMERS)
    assert files == BASE - {""}


def test_module_names_say_one_thing():
    """Outside cli/ (one file per subcommand, named after it) no two modules share a name."""
    names: dict[str, list[str]] = {}
    for p in LIB.rglob("*.py"):
        if p.name != "__init__.py" and "cli" not in p.relative_to(LIB).parts:
            names.setdefault(p.stem, []).append(str(p.relative_to(LIB)))
    assert not {n: ps for n, ps in names.items() if len(ps) > 1}


def test_imports_run_only_from_later_steps_to_earlier_ones():
    backward = sorted(f"{src} imports {dst}" for src, deps in graph().items() for dst in deps
                      if not allowed(src, dst))
    assert not backward, "\n".join(backward)


def find_cycles(edges: dict[str, set[str]]) -> list[str]:
    """Each import cycle found by a depth-first walk, as "a -> b -> a"."""
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1  # on the current path
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles():
    g = graph()
    # A module importing its own package's public names (``from PETriageLib.models import ...``
    # inside models/) is Python's package idiom, not a step of the flow.
    edges = {m: {d for d in deps if d in g and d != m and not m.startswith(d + ".")} for m, deps in g.items()}
    cycles = find_cycles(edges)
    assert not cycles, "\n".join(cycles)
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_rules_catch_a_backward_import():
    assert not allowed("PETriageLib.ingest.load", "PETriageLib.triage.eligibility")
    assert not allowed("PETriageLib.triage.cascade", "PETriageLib.explain.heatmaps")
    assert not allowed("PETriageLib.triage.cascade", "PETriageLib.training.series_models.patient")
    assert not allowed("PETriageLib.errors", "PETriageLib.ingest.volume")
    assert allowed("PETriageLib.reporting.report", "PETriageLib.explain.heatmaps")
    assert allowed("PETriageLib.cli.triage", "PETriageLib.screening.many_series")
    assert not allowed("PETriageLib.phantom.study", "PETriageLib.training.data")
    src = "def f():\n    from PETriageLib.training.data import cached_splits\n    from ..explain import heatmaps\n"
    found = imports_in(src, "PETriageLib.triage.probe")
    assert {"PETriageLib.training.data", "PETriageLib.explain", "PETriageLib.explain.heatmaps"} <= found
    assert not all(allowed("PETriageLib.triage.probe", d) for d in found)


def test_the_library_never_imports_slicer():
    """PETriageLib runs without Slicer; the Slicer module imports it, never the other way round."""
    offenders = {str(p.relative_to(LIB)): sorted(foreign_imports_of(p)) for p in LIB.rglob("*.py")
                 if foreign_imports_of(p)}
    assert not offenders


def test_public_api_resolves_and_names_no_folder():
    import PETriageLib

    folders = {p.name for p in LIB.iterdir() if p.is_dir()} | {p.stem for p in LIB.glob("*.py")}
    assert not folders & set(PETriageLib.__all__)  # a submodule import would overwrite such a name
    for name in PETriageLib.__all__:
        assert getattr(PETriageLib, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'cascade_run'"):
        PETriageLib.cascade_run


@pytest.mark.parametrize("module", ["PETriageLib", "PETriageLib.screening.many_series", "PETriageLib.triage.cascade",
                                    "PETriageLib.reporting.report"])
def test_importing_the_library_loads_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
