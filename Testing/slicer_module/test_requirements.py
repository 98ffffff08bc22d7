"""What the Slicer module installs agrees with the supported Slicer releases (5.10 and later, Python
3.12) and with pyproject.toml: lower bounds only, nothing Slicer bundles, torch from the PyTorch
extension; the checks that decide what is missing run on this Python's real installed packages."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "PETriage"))

# Slicer 5.10's bundle (Slicer's SuperBuild/External_python-*.cmake): what PETriage must accept as it is.
SLICER_5_10 = {"python": (3, 12), "numpy": "2.0.2", "scipy": "1.13.1", "pydicom": "2.4.4"}
BUNDLED = {"numpy", "scipy", "pydicom", "simpleitk", "vtk", "pillow", "torch", "torchvision"}


def _pyproject_bounds() -> dict[str, str]:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {m.group(1).lower(): m.group(2) for m in (re.match(r"([\w.-]+)>=([\w.]+)$", d) for d in deps) if m}


def test_requirement_files_have_lower_bounds_only_and_nothing_slicer_bundles() -> None:
    from PETriageSlicer.install import NO_DEPS_FILE, REQUIREMENTS_FILE, read_requirements

    lines = read_requirements(REQUIREMENTS_FILE) + read_requirements(NO_DEPS_FILE)
    assert "grad-cam>=1.5" in read_requirements(NO_DEPS_FILE)  # its own requirements pull torch
    assert len(lines) >= 8
    for line in lines:
        name, op, _ = re.match(r"([\w.-]+)(>=)([\w.]+)$", line).groups()
        assert name.lower() not in BUNDLED, f"{line}: Slicer bundles it"
    bounds = _pyproject_bounds()
    for line in lines:
        name, bound = line.split(">=")
        if name.lower() in bounds:
            assert bounds[name.lower()] == bound, f"{line} disagrees with pyproject.toml ({bounds[name.lower()]})"


def test_pyproject_accepts_slicer_5_10_as_bundled() -> None:
    import tomllib

    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "3.12" in SpecifierSet(project["requires-python"])
    bounds = _pyproject_bounds()
    for name in ("numpy", "scipy", "pydicom"):
        assert SLICER_5_10[name] in SpecifierSet(f">={bounds[name]}"), f"{name} {SLICER_5_10[name]} would be replaced"


def test_every_module_file_parses_on_the_lowest_declared_python() -> None:
    files = [*(ROOT / "PETriageLib").rglob("*.py"), *(ROOT / "PETriage").rglob("*.py")]
    assert len(files) > 100
    for path in files:
        ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 10))


def test_missing_is_absent_or_older_than_the_bound() -> None:
    from importlib.metadata import version

    from PETriageSlicer.install import MissingPackage, missing_packages, needs_restart, pip_arguments

    assert missing_packages(["tqdm>=4.0", "numpy>=1.0"]) == []
    old = missing_packages(["tqdm>=999", "petriage-no-such-dist>=1"])
    assert old == [MissingPackage("tqdm>=999", version("tqdm")), MissingPackage("petriage-no-such-dist>=1", None)]
    __import__("tqdm")  # imported: an upgrade needs a restart

    assert needs_restart(old) == ["tqdm"]
    args = pip_arguments(old + [MissingPackage("grad-cam>=1.5", None, no_deps=True)])
    assert args == [["install", "tqdm>=999", "petriage-no-such-dist>=1"], ["install", "--no-deps", "grad-cam>=1.5"]]


def test_this_python_has_everything_and_the_logic_imports() -> None:
    from PETriageSlicer.install import missing_pip_packages, missing_torch

    assert missing_torch() == [] and missing_pip_packages() == []


def test_missing_torch_gives_the_instruction_not_a_module_error(monkeypatch) -> None:
    from PETriageSlicer import install

    monkeypatch.setattr(install, "TORCH_REQUIREMENTS", ("torch>=999",))
    with pytest.raises(ImportError, match=r"ensure_dependencies\(\)") as caught:
        install.require()
    assert isinstance(caught.value, install.DependenciesMissing) and "torch>=999 (installed: " in str(caught.value)


def test_supported_releases_are_stated_everywhere() -> None:
    for path in ("README.md", "docs/slicer.md", "CMakeLists.txt", "PETriage/PETriage.py"):
        assert "Slicer 5.10 or later" in (ROOT / path).read_text(), path
