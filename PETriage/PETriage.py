"""PETriage: pulmonary embolism triage of chest CT in 3D Slicer (5.10 or later).

This file is the module, the widget shell and the self-test. The panel lives in PETriagePanel/
(parameters, widget, dependency installer) and every scene behaviour in the Qt-free package
PETriageSlicer (tested outside Slicer on PyPI's slicer-core).
"""
import os

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

README_URL = "https://github.com/PETriage/PETriage#readme"


class PETriage(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "PETriage"
        self.parent.categories = ["Analysis"]
        self.parent.dependencies = []
        self.parent.contributors = ["PETriage contributors (PETriage project)"]
        self.parent.helpText = (
            "Screens a chest CT for pulmonary embolism with a two-stage slice cascade (stage 1: normal vs "
            "disease, stage 2: PE vs other disease), shows per-slice probabilities, a chart along z and "
            "Grad-CAM heatmaps over the slices, ranks many series in a worklist, and lets you correct slice "
            "labels and fine-tune the models. Needs Slicer 5.10 or later and the PyTorch extension. "
            "Research software: not for clinical use. "
            f'See the <a href="{README_URL}">README</a> for scripting examples.'
        )
        self.parent.acknowledgementText = (
            "Two-stage CBAM dilated residual network cascade after the seed paper on PE triage of chest CT; "
            "DRN by Yu et al. (2017), CBAM by Woo et al. (2018), Grad-CAM via pytorch-grad-cam. "
            "The real test series is from COVID-CT-MD (Afshar et al., Scientific Data 2021)."
        )


def ensureDependencies(prompt=True):
    """Install what PETriage needs (the console's way; the panel has a button)."""
    from PETriageSlicer.install import ensure_dependencies

    ensure_dependencies(prompt)


class PETriageLogic(ScriptedLoadableModuleLogic):
    """Module logic: the parameter node, and the scene logic of PETriageSlicer (made on first use)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._scene = None

    def getParameterNode(self):
        """The typed parameter node (PETriagePanel.panel_parameters.PETriageParameterNode)."""
        from PETriagePanel.panel_parameters import PETriageParameterNode

        return PETriageParameterNode(super().getParameterNode())

    @property
    def scene(self):
        if self._scene is None:
            from PETriageSlicer.logic import PETriageSceneLogic  # raises DependenciesMissing with what to do

            self._scene = PETriageSceneLogic(slicer.mrmlScene)
        return self._scene


class PETriageWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.panel = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from PETriagePanel.panel_widget import PETriagePanel

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PETriage.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PETriageLogic()
        self.panel = PETriagePanel(self, self.ui, self.logic)
        self.panel.initializeParameterNode()

    def cleanup(self):
        if self.panel is not None:
            self.panel.cleanup()

    def enter(self):
        self.panel.initializeParameterNode()

    def exit(self):
        self.panel.disconnectGui()


class PETriageTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode: Reload and Test, or ctest -R py_PETriage); no network:
    in testing mode nothing is installed, a missing dependency fails the test with what to install."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TriageSyntheticStudyInChildProcess()
        self.setUp()
        self.test_SceneSuitesOnThisSlicer()

    def test_SceneSuitesOnThisSlicer(self):
        """The scene-logic suites that run on PyPI's slicer-core (Testing/slicer_scene), run again on
        this Slicer's own MRML. They live in a source checkout, not in an installed extension, and
        need pytest: where either is missing, say so and pass (testing mode installs nothing)."""
        import importlib.util

        suites = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Testing", "slicer_scene")
        if not os.path.isdir(suites) or importlib.util.find_spec("pytest") is None:
            self.delayDisplay(f"Scene suites not run: they need a source checkout ({suites}) and pytest "
                              "(slicer.util.pip_install('pytest') outside testing mode)")
            return
        import pytest

        self.delayDisplay(f"Running the scene suites of {suites} on this Slicer")
        code = pytest.main(["-q", "-p", "no:cacheprovider", suites])
        self.assertEqual(int(code), 0, f"scene suites failed on this Slicer (pytest exit code {int(code)})")

    def test_TriageSyntheticStudyInChildProcess(self):
        import tempfile

        import vtk

        from PETriageSlicer.install import require

        require()  # testing mode never downloads: fail with the instruction instead
        from PETriageLib.models import build_model, save_checkpoint
        from PETriageLib.phantom import generate_study, write_study
        from PETriageLib.vocabulary import STAGE_CLASSES
        from PETriageSlicer.logic import PETriageSceneLogic, TriageSettings

        self.delayDisplay("Generating a small synthetic PE study and two tiny models")
        tmp = tempfile.mkdtemp(prefix="petriage-selftest-")
        study = generate_study(7, matrix=128, slices=24, pe=True, contrast="ctpa")
        write_study(study, os.path.join(tmp, "study"))
        paths = []
        for stage in (1, 2):
            model = build_model("cbamdrn_d22", ("vascular", "lung"), width=0.25)
            meta = {"class_names": list(STAGE_CLASSES[stage]), "input_size": 64, "threshold": 0.0 if stage == 1 else 0.5}
            paths.append(str(save_checkpoint(os.path.join(tmp, f"stage{stage}.pt"), model, meta)))
        logic = PETriageSceneLogic(slicer.mrmlScene)
        ct = logic.load_dicom(os.path.join(tmp, "study"))
        self.delayDisplay("Triage in a child process")
        job = logic.start_triage(ct, TriageSettings(paths[0], paths[1], device="cpu", top_k=2))
        self.assertEqual(job.wait(300), 0, job.process.tail())
        nodes = job.publish()
        self.assertEqual(nodes.table.GetNumberOfRows(), ct.GetImageData().GetDimensions()[2])
        self.assertEqual(set(nodes.heatmaps), {"vascular", "lung"})
        red = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceCompositeNodeRed")
        self.assertIn(red.GetForegroundVolumeID(), [n.GetID() for n in nodes.heatmaps.values()])
        k = logic.jump_to_max_pe(nodes.table)
        m = vtk.vtkMatrix4x4()
        ct.GetIJKToRASMatrix(m)
        z = m.MultiplyPoint([0, 0, k, 1])[2]
        self.assertAlmostEqual(slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed").GetSliceOffset(), z, places=3)
        self.delayDisplay("Widget: select the CT, Apply, wait, click a row")
        widget = slicer.modules.petriage.widgetRepresentation().self()
        slicer.util.selectModule("PETriage")
        panel = widget.panel
        panel._parameterNode.inputVolume = ct
        panel._parameterNode.stage1Model, panel._parameterNode.stage2Model = paths
        panel._parameterNode.device = "cpu"
        panel.onApply()
        while panel.job is not None:
            slicer.app.processEvents()
            panel.onTimer()
        view = widget.ui.resultsTableView
        self.assertIs(view.mrmlTableNode(), slicer.mrmlScene.GetNodeByID(ct.GetNodeReferenceID("PETriageTable")))
        view.selectRow(3)
        from PETriagePanel.panel_widget import selected_table_row

        self.assertEqual(selected_table_row(view), 3)
        self.delayDisplay("Test passed")
