"""A working MRML scene outside the Slicer application (PyPI slicer-core), and scene helpers.

Inside Slicer the application owns the scene, its logics and the slice views; outside it
(tests, batch scripts) ``new_scene`` builds the same pieces the logic relies on: the
application logic with its color nodes (Iron, PET-Heat, ...) and the three slice views with
their slice and slice composite nodes.
"""
from __future__ import annotations

import slicer

# The conventional layout: view name -> orientation.
SLICE_VIEWS = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}

_APP_LOGICS: dict[int, object] = {}  # keep each scene's application logic alive with it


def new_scene(set_global: bool = True) -> "slicer.vtkMRMLScene":
    """Create a scene with application logic, default color nodes and Red/Yellow/Green views.

    With ``set_global`` the scene also becomes ``slicer.mrmlScene`` so that ``slicer.util``
    helpers (array access, table updates) work on it, as they do inside Slicer.
    """
    from vtkmodules.vtkCommonCore import vtkCollection

    register_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app.GetColorLogic().SetMRMLScene(scene)
    app.GetColorLogic().AddDefaultColorNodes()
    # Volumes logic looks the color logic up by module name, as in the application.
    app.SetModuleLogic("Colors", app.GetColorLogic())
    app.SetSliceLogics(vtkCollection())
    app.SetViewLogics(vtkCollection())
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    for name, orientation in SLICE_VIEWS.items():
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        slice_node = logic.AddSliceNode(name)
        slice_node.SetOrientation(orientation)
        slice_node.SetLayoutLabel(name[0])
        app.GetSliceLogics().AddItem(logic)
    _APP_LOGICS[id(scene)] = app
    if set_global:
        slicer.mrmlScene = scene
    return scene


def register_segmentation_converters() -> None:
    """Labelmap <-> surface rules, which Slicer's Segmentations module registers at start-up."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if len(factory.GetConverterRules()):
        return
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def application_logic(scene: "slicer.vtkMRMLScene"):
    """The application logic of ``scene``: Slicer's own inside the app, else new_scene's."""
    app = getattr(slicer, "app", None)
    if app is not None and hasattr(app, "applicationLogic"):
        return app.applicationLogic()
    if id(scene) not in _APP_LOGICS:
        raise RuntimeError("this scene has no application logic: create it with PETriageSlicer.scene.new_scene()")
    return _APP_LOGICS[id(scene)]


def nodes_by_class(scene: "slicer.vtkMRMLScene", class_name: str) -> list:
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]


def slice_node(scene: "slicer.vtkMRMLScene", view: str = "Red"):
    node = scene.GetNodeByID(f"vtkMRMLSliceNode{view}")
    if node is None:
        raise RuntimeError(f"the scene has no {view} slice view")
    return node


def color_node_id(scene: "slicer.vtkMRMLScene", name: str) -> str:
    """ID of the built-in color node called ``name`` (e.g. 'Iron', 'PET-Heat')."""
    for node in nodes_by_class(scene, "vtkMRMLColorNode"):
        if node.GetName() == name:
            return node.GetID()
    raise ValueError(f"color map {name!r} not found in the scene")


def save_mrb(scene: "slicer.vtkMRMLScene", path: str) -> str:
    """Save the whole scene with its data as a Slicer data bundle (.mrb)."""
    import os
    import shutil
    import tempfile

    app = application_logic(scene)
    path = os.path.abspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, stem)
        os.makedirs(bundle)
        if not app.SaveSceneToSlicerDataBundleDirectory(bundle, None):
            raise OSError(f"could not write the scene into {bundle}")
        if os.path.exists(path):
            os.remove(path)
        if not app.Zip(path, bundle):
            raise OSError(f"could not write {path}")
        shutil.rmtree(bundle, ignore_errors=True)
    return path


def load_mrb(scene: "slicer.vtkMRMLScene", path: str, work_dir: str) -> None:
    """Replace ``scene``'s content with a .mrb bundle, unpacked into ``work_dir`` (kept: nodes read from it)."""
    import os

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such scene bundle")
    os.makedirs(work_dir, exist_ok=True)
    if not application_logic(scene).OpenSlicerDataBundle(path, work_dir):
        raise OSError(f"{path}: Slicer could not open this scene bundle")
