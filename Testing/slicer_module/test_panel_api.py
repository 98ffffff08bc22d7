"""The panel (PETriage.py, PETriagePanel/) only runs inside the Slicer application, so check it
statically against the real APIs: every widget name it uses is defined in the .ui, every slicer.util
function it calls exists in slicer-core's slicer.util, every MRML/VTK method exists on slicer-core's
real classes, and every other method name is in CHECKED with the Slicer / CTK / Qt source file it was
checked against (a new call fails this test until someone checks it and lists it)."""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")

MODULE = Path(__file__).resolve().parents[2] / "PETriage"
PANEL_FILES = [MODULE / "PETriage.py", *sorted((MODULE / "PETriagePanel").glob("*.py"))]
# Qt-free logic files that call Slicer-application-only APIs (not reachable on slicer-core)
APP_ONLY_FILES = [MODULE / "PETriageSlicer" / "install.py"]

# name -> the source that defines it (Slicer: github.com/Slicer/Slicer, CTK: github.com/commontk/CTK,
# SlicerPyTorch: github.com/fepegar/SlicerPyTorch, Qt 5: the QtWidgets/QtCore class reference).
CHECKED = {
    "mrmlTableNode": "Slicer Libs/MRML/Widgets/qMRMLTableView.h (Q_INVOKABLE)",
    "setMRMLTableNode": "Slicer Libs/MRML/Widgets/qMRMLTableView.h (public slot)",
    "tableModel": "Slicer Libs/MRML/Widgets/qMRMLTableView.h (Q_INVOKABLE)",
    "sortFilterProxyModel": "Slicer Libs/MRML/Widgets/qMRMLTableView.h (Q_INVOKABLE)",
    "mrmlTableRowIndex": "Slicer Libs/MRML/Widgets/qMRMLTableModel.h / .cxx (header-row rule)",
    "setMRMLScene": "Slicer Libs/MRML/Widgets/qMRMLWidget.h (slot)",
    "ShowChartInLayout": "Slicer Modules/Loadable/Plots/Logic/vtkSlicerPlotsLogic.h",
    "layoutManager": "Slicer Base/QTGUI/qSlicerApplication.h",
    "setLayout": "Slicer Libs/MRML/Widgets/qMRMLLayoutManager.h (slot)",
    "widgetRepresentation": "Slicer Base/QTCore/qSlicerAbstractCoreModule.h",
    "logic": "Slicer Base/QTCore/qSlicerAbstractCoreModule.h",
    "self": "Slicer Base/QTGUI/qSlicerScriptedLoadableModuleWidget.h (self())",
    "getParameterNode": "Slicer Base/Python/slicer/ScriptedLoadableModule.py (ScriptedLoadableModuleLogic)",
    "resourcePath": "Slicer Base/Python/slicer/ScriptedLoadableModule.py (ScriptedLoadableModuleWidget)",
    "delayDisplay": "Slicer Base/Python/slicer/ScriptedLoadableModule.py (ScriptedLoadableModuleTest)",
    "connectGui": "Slicer Base/Python/slicer/parameterNodeWrapper/wrapper.py",
    "dicomTableManager": "CTK Libs/DICOM/Widgets/ctkDICOMBrowser.h (Q_INVOKABLE)",
    "currentSeriesSelection": "CTK Libs/DICOM/Widgets/ctkDICOMTableManager.h (Q_INVOKABLE)",
    "installTorch": "SlicerPyTorch PyTorchUtils/PyTorchUtils.py (askConfirmation, torchVersionRequirement)",
    "extensionsManagerModel": "Slicer Base/QTCore/qSlicerCoreApplication.h (Q_INVOKABLE)",
    "updateExtensionsMetadataFromServer": "Slicer Base/QTCore/qSlicerExtensionsManagerModel.h (slot)",
    "downloadAndInstallExtensionByName": "Slicer Base/QTCore/qSlicerExtensionsManagerModel.h (slot; Slicer 5.4+)",
    "PyTorchUtilsLogic": "SlicerPyTorch PyTorchUtils/PyTorchUtils.py",
    "importDicom": "Slicer Modules/Scripted/DICOM/DICOMLib/DICOMUtils.py (importDicom(dicomDataDir, dicomDatabase=None, copyFiles=False))",
    "WaitCursor": "slicer.util (test_every_slicer_util_function_exists_in_slicer_core)",
    "QTimer": "Qt QtCore QTimer", "setInterval": "Qt QTimer", "stop": "Qt QTimer",
    "addItems": "Qt QComboBox", "clear": "Qt QComboBox", "setCurrentText": "Qt QComboBox (slot)",
    "setEditable": "Qt QComboBox", "blockSignals": "Qt QObject",
    "currentIndex": "Qt QItemSelectionModel", "isValid": "Qt QModelIndex",
    "mapToSource": "Qt QSortFilterProxyModel", "selectionModel": "Qt QAbstractItemView",
    "setSelectionBehavior": "Qt QAbstractItemView", "setSelectionMode": "Qt QAbstractItemView",
    "selectRow": "Qt QTableView (slot)", "getExistingDirectory": "Qt QFileDialog (static)",
    "addWidget": "Qt QLayout", "processEvents": "Qt QCoreApplication (static)",
}
PYTHON = {"contains", "find_spec", "get", "getLogger", "import_module", "read_text", "replace", "split",
          "splitlines", "strip", "version", "append", "join", "loads", "isfile", "isdir", "dirname", "abspath", "main", "mkdtemp", "pop", "remove", "startswith", "values", "on_done",
          "assertAlmostEqual", "assertEqual", "assertIn", "assertIs"}
# attributes (properties, signals) read or set on Slicer/CTK objects
CHECKED_ATTRIBUTES = {
    "directory": "CTK Libs/Widgets/ctkDirectoryButton.h (Q_PROPERTY directory)",
    "directoryChanged": "CTK Libs/Widgets/ctkDirectoryButton.h (signal directoryChanged(QString))",
    "defaultScenePath": "Slicer Base/QTCore/qSlicerCoreApplication.h (Q_PROPERTY defaultScenePath)",
    "browserWidget": "Slicer Modules/Scripted/DICOM/DICOM.py (DICOMWidget.browserWidget)",
    "dicomBrowser": "Slicer Modules/Scripted/DICOM/DICOMLib/DICOMBrowser.py (SlicerDICOMBrowser.dicomBrowser)",
    "parameterNode": "Slicer Base/Python/slicer/parameterNodeWrapper/wrapper.py (_initMethod sets it)",
    "isEntered": "Slicer Base/QTGUI/qSlicerAbstractModuleWidget.h (Q_PROPERTY isEntered)",
}
NEVER = {"selectedSeriesUIDs": "exists in neither CTK nor Slicer (issue #20, defect 4)"}
MRML_CLASSES = ("vtkMRMLScene", "vtkMRMLScalarVolumeNode", "vtkMRMLTableNode", "vtkMRMLSliceNode",
                "vtkMRMLSliceCompositeNode", "vtkMRMLSubjectHierarchyNode", "vtkMRMLPlotChartNode")


def _trees() -> list[ast.AST]:
    return [ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in PANEL_FILES + APP_ONLY_FILES]


def _own_names() -> set[str]:
    """Functions and classes this project defines (checked by its own tests)."""
    roots = [MODULE, MODULE.parent / "PETriageLib"]
    names = set()
    for p in (p for root in roots for p in root.rglob("*.py")):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) for t in n.targets):
                names.update(t.id for t in n.targets)  # e.g. load_worklist_row = staticmethod(...)
    return names


def _called() -> set[str]:
    return {n.func.attr for t in _trees() for n in ast.walk(t)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}


def test_the_parameter_node_class_has_no_postponed_annotations() -> None:
    """parameterNodeWrapper reads the class with typing.get_type_hints (wrapper.py, _processClass):
    keep its annotations real objects, not strings to evaluate later."""
    text = (MODULE / "PETriagePanel" / "panel_parameters.py").read_text()
    assert "from __future__ import annotations" not in text and "@parameterNodeWrapper" in text


def test_every_widget_name_used_is_in_the_ui() -> None:
    ui = ET.parse(MODULE / "Resources" / "UI" / "PETriage.ui").getroot()
    names = {w.get("name") for w in ui.iter("widget")}
    text = "\n".join(p.read_text() for p in PANEL_FILES)
    used = set(re.findall(r"\b(?:self\.ui|u|widget\.ui)\.(\w+)", text))
    tree = ast.parse((MODULE / "PETriagePanel" / "panel_widget.py").read_text())
    busy = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "BUSY_DISABLED")
    used |= set(ast.literal_eval(busy))
    assert len(used) >= 25 and used <= names, f"missing in PETriage.ui: {sorted(used - names)}"


def test_every_slicer_util_function_exists_in_slicer_core() -> None:
    import slicer.util

    text = "\n".join(p.read_text() for p in MODULE.rglob("*.py"))
    used = set(re.findall(r"slicer\.util\.(\w+)", text))
    assert {"tryWithErrorDisplay", "setSliceViewerLayers", "pip_install", "restart"} <= used
    missing = sorted(name for name in used if not hasattr(slicer.util, name))
    assert not missing, f"not in slicer.util: {missing}"


def test_every_method_called_is_defined_by_mrml_or_checked_against_its_source() -> None:
    import vtk

    import slicer.util

    text = "\n".join(p.read_text() for p in PANEL_FILES + APP_ONLY_FILES)
    via_util = set(re.findall(r"slicer\.util\.(\w+)\(", text))  # test_every_slicer_util_function_...
    mixin = {n for n in dir(slicer.util.VTKObservationMixin) if not n.startswith("_")}
    called = _called() - _own_names() - via_util - mixin
    mrml = {name for name in called if name[:1].isupper() or name.startswith("vtk")}
    classes = [getattr(slicer, c) for c in MRML_CLASSES] + [vtk, vtk.vtkMatrix4x4, vtk.vtkImageData]
    undefined = sorted(n for n in mrml if n not in CHECKED and not any(hasattr(c, n) for c in classes))
    assert not undefined, f"no slicer-core MRML/VTK class defines: {undefined}"
    unchecked = sorted(called - mrml - set(CHECKED) - PYTHON)
    assert not unchecked, f"check these against the Slicer/CTK/Qt sources and add them to CHECKED: {unchecked}"
    stale = sorted(set(CHECKED) - _called())
    assert not stale, f"CHECKED lists names the panel no longer calls: {stale}"


def test_attributes_are_checked_and_removed_apis_are_gone() -> None:
    text = "\n".join(p.read_text() for p in MODULE.rglob("*.py"))
    for name in CHECKED_ATTRIBUTES:
        assert re.search(rf"\.{name}\b|\"{name}\"", text), f"{name} is no longer used: drop it from CHECKED_ATTRIBUTES"
    for name, why in NEVER.items():
        assert name not in text, f"{name}: {why}"
