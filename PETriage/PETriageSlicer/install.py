"""What PETriage needs in Slicer's Python (Slicer 5.10 or later), what is missing, and how it gets installed.

Rules (the way Slicer and its best extensions do it):
- never list what Slicer bundles (numpy, scipy, pydicom, SimpleITK, vtk, Pillow);
- lower bounds, never pins: a newer version already installed is kept;
- packages whose own requirements would drag torch or another numpy in are installed ``--no-deps``
  (Resources/requirements-no-deps.txt);
- torch/torchvision only through the PyTorch extension's ``PyTorchUtilsLogic.installTorch`` with a
  minimum version (SlicerPyTorch, PyTorchUtils/PyTorchUtils.py);
- Slicer 5.11+: ``slicer.packaging.pip_ensure`` (Base/Python/slicer/packaging.py), which prompts and
  offers the restart itself; older releases: pip in a child process the panel polls, so the GUI
  stays responsive (see child_process.py).

The checks are Qt-free (tested on slicer-core); ``ensure_dependencies`` is the console's way in:

    from PETriageSlicer.install import ensure_dependencies
    ensure_dependencies()          # asks, installs what is missing, offers a restart when needed
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[1] / "Resources"
REQUIREMENTS_FILE = RESOURCES / "requirements.txt"
NO_DEPS_FILE = RESOURCES / "requirements-no-deps.txt"
TORCH_REQUIREMENTS = ("torch>=2.1", "torchvision>=0.16")  # the same bounds as pyproject.toml
PYTORCH_EXTENSION = "PyTorch"  # Extensions Index name of the extension that provides PyTorchUtils
# import names of the distributions PETriage's code imports (for the "already imported" restart check)
IMPORT_NAMES = {"scikit-learn": "sklearn", "opencv-python-headless": "cv2", "grad-cam": "pytorch_grad_cam",
                "pylibjpeg-libjpeg": "libjpeg", "pylibjpeg-openjpeg": "openjpeg", "pylibjpeg-rle": "rle"}


class DependenciesMissing(ImportError):
    """Raised on import of the scene logic when PETriage's packages are not installed yet."""


@dataclass(frozen=True)
class MissingPackage:
    requirement: str  # e.g. "grad-cam>=1.5"
    installed: str | None  # the installed version when it is too old, None when absent
    no_deps: bool = False  # install with --no-deps

    @property
    def name(self) -> str:
        return _requirement(self.requirement).name

    def describe(self) -> str:
        return self.requirement + ("" if self.installed is None else f" (installed: {self.installed})")


def _requirement(text: str):
    try:
        from packaging.requirements import Requirement
    except ImportError:  # Slicer always has pip, which vendors packaging
        from pip._vendor.packaging.requirements import Requirement
    return Requirement(text)


def read_requirements(path: "str | Path") -> list[str]:
    """Requirement lines of a requirements file, comments and blank lines dropped."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec:
            _requirement(spec)  # a malformed line fails here, naming itself
            lines.append(spec)
    return lines


def missing_packages(requirements: "list[str]", no_deps: bool = False) -> list[MissingPackage]:
    """The requirements not satisfied by what is installed (absent, or older than the bound)."""
    out = []
    for spec in requirements:
        req = _requirement(spec)
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(MissingPackage(spec, None, no_deps))
            continue
        if not req.specifier.contains(installed, prereleases=True):
            out.append(MissingPackage(spec, installed, no_deps))
    return out


def missing_pip_packages() -> list[MissingPackage]:
    """What requirements.txt and requirements-no-deps.txt ask for and is not there."""
    return (missing_packages(read_requirements(REQUIREMENTS_FILE))
            + missing_packages(read_requirements(NO_DEPS_FILE), no_deps=True))


def missing_torch() -> list[MissingPackage]:
    return missing_packages(list(TORCH_REQUIREMENTS))


def pip_arguments(missing: "list[MissingPackage]") -> list[list[str]]:
    """`pip install` argument lists: one for the packages with dependencies, one ``--no-deps``."""
    groups = []
    with_deps = [m.requirement for m in missing if not m.no_deps]
    without = [m.requirement for m in missing if m.no_deps]
    if with_deps:
        groups.append(["install", *with_deps])
    if without:
        groups.append(["install", "--no-deps", *without])
    return groups


def needs_restart(missing: "list[MissingPackage]") -> list[str]:
    """Packages to be upgraded whose old version is already imported: only a restart loads the new one."""
    out = []
    for m in missing:
        module = IMPORT_NAMES.get(m.name, m.name.replace("-", "_"))
        if m.installed is not None and module in sys.modules:
            out.append(m.name)
    return out


def instruction(missing: "list[MissingPackage]") -> str:
    names = ", ".join(m.describe() for m in missing)
    return (f"PETriage needs packages that are not installed: {names}. In the PETriage panel press "
            "'Install dependencies', or in Slicer's Python console run:\n"
            "    from PETriageSlicer.install import ensure_dependencies; ensure_dependencies()\n"
            "(outside Slicer: pip install -e /path/to/PETriage)")


def require() -> None:
    """Raise DependenciesMissing (an ImportError that says what to do) when anything is missing."""
    missing = missing_torch() + missing_pip_packages()
    if missing:
        raise DependenciesMissing(instruction(missing))


def modules_present() -> bool:
    """Cheap check without reading metadata: can torch and grad-cam be imported at all."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision", "pytorch_grad_cam"))


def has_pip_ensure() -> bool:
    """Slicer 5.11+ has slicer.packaging.pip_ensure."""
    return importlib.util.find_spec("slicer.packaging") is not None and hasattr(
        importlib.import_module("slicer.packaging"), "pip_ensure")


def ensure_torch(prompt: bool = True) -> None:
    """Inside Slicer: torch and torchvision through the PyTorch extension, with PETriage's minimum version."""
    import slicer

    if not missing_torch():
        return
    try:
        import PyTorchUtils  # the PyTorch extension (EXTENSION_DEPENDS PyTorch)
    except ImportError:
        install_pytorch_extension(prompt)
        return
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=prompt, torchVersionRequirement=TORCH_REQUIREMENTS[0][len("torch"):])
    if torch is None:
        raise RuntimeError("PETriage needs PyTorch: install it from the PyTorch Utils module.")
    if missing_torch():
        slicer.util.errorDisplay(f"PETriage needs {' and '.join(TORCH_REQUIREMENTS)}; "
                                 "uninstall the older one in PyTorch Utils, restart, and install again.")
        raise RuntimeError(instruction(missing_torch()))


def install_pytorch_extension(prompt: bool = True) -> None:
    """Offer to install the PyTorch extension (qSlicerExtensionsManagerModel::downloadAndInstallExtensionByName)
    and restart; always raises, because torch is usable only after the restart."""
    import slicer

    text = ("PETriage needs the PyTorch extension (it installs torch for your GPU). "
            "Install it now and restart Slicer?")
    if prompt and not slicer.util.confirmOkCancelDisplay(text, "PETriage"):
        raise RuntimeError("PETriage needs the PyTorch extension: install it from the Extensions Manager.")
    manager = slicer.app.extensionsManagerModel()
    manager.updateExtensionsMetadataFromServer(True, True)
    if not manager.downloadAndInstallExtensionByName(PYTORCH_EXTENSION, True, True):
        raise RuntimeError("Installing the PyTorch extension failed: install it from the Extensions Manager.")
    slicer.util.restart()
    raise RuntimeError("Restart Slicer to use the PyTorch extension.")


def ensure_pip_packages(prompt: bool = True) -> list[MissingPackage]:
    """Inside Slicer, blocking (the console's way; the panel runs pip in a child process instead).
    Returns what was installed."""
    import slicer

    missing = missing_pip_packages()
    if not missing:
        return []
    try:
        from slicer.packaging import pip_ensure  # Slicer 5.11+: prompts, shows progress, offers restart
    except ImportError:
        pip_ensure = None
    if pip_ensure is not None:
        pip_ensure([_requirement(m.requirement) for m in missing if not m.no_deps],
                   prompt_install=prompt, requester="PETriage")
        no_deps = [m.requirement for m in missing if m.no_deps]
        if no_deps:
            slicer.util.pip_install(["--no-deps", *no_deps])
        return missing
    if prompt and not slicer.util.confirmOkCancelDisplay(
            "PETriage will install: " + ", ".join(m.describe() for m in missing), "PETriage"):
        raise RuntimeError("PETriage dependencies were not installed.")
    with slicer.util.WaitCursor():
        for args in pip_arguments(missing):
            slicer.util.pip_install(args[1:])
    offer_restart(missing, prompt)
    return missing


def offer_restart(installed: "list[MissingPackage]", prompt: bool = True) -> None:
    import slicer

    stale = needs_restart(installed)
    if stale and prompt and slicer.util.confirmYesNoDisplay(
            f"{', '.join(stale)} were already loaded in their old version: restart Slicer now?", "PETriage"):
        slicer.util.restart()


def ensure_dependencies(prompt: bool = True) -> None:
    """Inside Slicer: torch (PyTorch extension), then the pip packages; raises when something is still missing."""
    ensure_torch(prompt)
    ensure_pip_packages(prompt)
    require()
