"""The thin Slicer module file cannot run here (it needs the Slicer app), so check its wiring
statically: every widget bound to the parameter node names a field of the typed parameter node,
and CMakeLists.txt installs every file (test_panel_api.py checks the calls against Slicer's APIs)."""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE = Path(__file__).resolve().parents[2] / "PETriage"


def _ui() -> ET.Element:
    return ET.parse(MODULE / "Resources" / "UI" / "PETriage.ui").getroot()


def _parameter_fields() -> dict[str, str]:
    tree = ast.parse((MODULE / "PETriagePanel" / "panel_parameters.py").read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "PETriageParameterNode")
    return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}


def test_bound_widgets_name_parameter_node_fields() -> None:
    bound = {}
    for widget in _ui().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("class")
    fields = _parameter_fields()
    assert bound, "no widget is bound to the parameter node"
    assert set(bound) <= set(fields), f"bound to no field: {sorted(set(bound) - set(fields))}"
    assert bound["learnFromLesions"] == "QCheckBox" and fields["learnFromLesions"] == "bool"
    assert bound["epochs"] == "QSpinBox"




def test_cmake_installs_every_scene_logic_file() -> None:
    """The extension build installs the files CMakeLists.txt lists; a renamed or new file of
    PETriageSlicer/ that is not listed would be missing from the installed module."""
    cmake = (MODULE / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"^\s+(PETriage(?:Slicer|Panel)/\w+\.py)$", cmake, re.M))
    present = {f"{p.parent.name}/{p.name}" for folder in ("PETriageSlicer", "PETriagePanel")
               for p in (MODULE / folder).glob("*.py")}
    assert listed == present
    resources = set(re.findall(r"^\s+(Resources/\S+)$", cmake, re.M))
    assert {"Resources/requirements.txt", "Resources/requirements-no-deps.txt"} <= resources
