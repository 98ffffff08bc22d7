"""PETriage: pulmonary embolism triage of chest CT in 3D Slicer.

This file is the module, a thin widget and the self-test. Every behaviour lives in the Qt-free
package PETriageSlicer (tested outside Slicer on PyPI's slicer-core); the widget only binds the
parameter node to the .ui, runs the logic off the GUI thread and shows progress and errors.
"""
import json
import logging
import os
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from PETriageLib.vocabulary import CAM_MODES, DOMAIN_CHECK_MODES, SLICE_LABELS, STAGE_CLASSES

README_URL = "https://github.com/PETriage/PETriage#readme"


class PETriage(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "PETriage"
        self.parent.categories = ["Chest Imaging"]
        self.parent.dependencies = []
        self.parent.contributors = ["PETriage contributors"]
        self.parent.helpText = (
            "Screens a chest CT for pulmonary embolism with a two-stage slice cascade (stage 1: normal vs "
            "disease, stage 2: PE vs other disease), shows per-slice probabilities, a chart along z and "
            "Grad-CAM heatmaps over the slices, ranks many series in a worklist, and lets you correct slice "
            "labels and fine-tune the models. Research software: not for clinical use. "
            f'See the <a href="{README_URL}">README</a> for scripting examples.'
        )
        self.parent.acknowledgementText = (
            "Two-stage CBAM dilated residual network cascade after the seed paper on PE triage of chest CT; "
            "DRN by Yu et al. (2017), CBAM by Woo et al. (2018), Grad-CAM via pytorch-grad-cam. "
            "The real test series is from COVID-CT-MD (Afshar et al., Scientific Data 2021)."
        )


def ensureDependencies():
    """Install torch (through the PyTorch extension) and Resources/requirements.txt on first use."""
    try:
        import torch  # noqa: F401
    except ImportError:
        import PyTorchUtils  # from the PyTorch extension (EXTENSION_DEPENDS)

        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
            raise RuntimeError("PETriage needs PyTorch: install it from the PyTorch Utils module.")
    from importlib.metadata import PackageNotFoundError, version

    path = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
    missing = []
    with open(path) as f:
        for line in f:
            spec = line.split("#")[0].strip()
            if not spec:
                continue
            name, _, pinned = spec.partition("==")
            try:
                if version(name) != pinned:
                    missing.append(spec)
            except PackageNotFoundError:
                missing.append(spec)
    if missing:
        if not slicer.util.confirmOkCancelDisplay(f"PETriage will install: {', '.join(missing)}"):
            raise RuntimeError("PETriage dependencies were not installed.")
        with slicer.util.WaitCursor():
            slicer.util.pip_install(missing)


NO_MODEL = "(none)"  # the optional series-model combos' entry for "not used"


@parameterNodeWrapper
class PETriageParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    stage1Model: str = ""
    stage2Model: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    useModelThreshold: bool = True
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    patientModel: str = ""  # a patient classifier file; empty: a patient is flagged when a slice is
    refinerModel: str = ""  # a slice refiner file; empty: the stages' own slice probabilities
    domainCheck: Annotated[str, Choice(list(DOMAIN_CHECK_MODES))] = "refuse"  # series unlike the training data
    camMode: Annotated[str, Choice(list(CAM_MODES))] = "top-k"
    topK: Annotated[int, WithinRange(1, 100)] = 5
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    heatmapThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.2
    foregroundBranch: Annotated[str, Choice(["vascular", "lung"])] = "vascular"
    annotationLabel: Annotated[str, Choice(list(SLICE_LABELS))] = "pe"
    labelFrom: int = 0
    labelTo: int = 0
    epochs: Annotated[int, WithinRange(1, 100)] = 3
    learnFromLesions: bool = True
    newModelName: str = ""


class PETriageLogic(ScriptedLoadableModuleLogic):
    """Module logic: the parameter node, and the scene logic of PETriageSlicer (imported on first use)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._scene = None

    def getParameterNode(self):
        return PETriageParameterNode(super().getParameterNode())

    @property
    def scene(self):
        if self._scene is None:
            ensureDependencies()
            from PETriageSlicer.logic import PETriageSceneLogic as SceneLogic

            self._scene = SceneLogic(slicer.mrmlScene)
        return self._scene

    def settings(self, p):
        from PETriageSlicer.logic import TriageSettings
        from PETriageSlicer.results import DisplayOptions

        return TriageSettings(
            stage1=p.stage1Model, stage2=p.stage2Model, device=p.device,
            threshold_pe=None if p.useModelThreshold else p.threshold, patient_model=p.patientModel or None,
            refiner=p.refinerModel or None, domain_check=p.domainCheck,
            cam=p.camMode, top_k=p.topK,
            display=DisplayOptions(threshold=p.heatmapThreshold, opacity=p.opacity,
                                   foreground_branch=p.foregroundBranch),
        )


class PETriageWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.work = None
        self.finish = None
        self.fineTuneJobs = []
        self.resultNodes = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PETriage.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PETriageLogic()
        # Model lists change at run time (fine-tuned versions), so the model combos are bound by hand.
        for combo, name in ((self.ui.stage1ModelComboBox, "stage1Model"),
                            (self.ui.stage2ModelComboBox, "stage2Model"),
                            (self.ui.refinerModelComboBox, "refinerModel"),
                            (self.ui.patientModelComboBox, "patientModel")):
            combo.setEditable(True)  # a checkpoint path may be typed in
            combo.currentTextChanged.connect(lambda text, name=name: self.setModelParameter(name, text))
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.onTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        u = self.ui
        u.loadFolderButton.clicked.connect(self.onLoadFolder)
        u.loadDatabaseButton.clicked.connect(self.onLoadFromDatabase)
        u.applyButton.clicked.connect(self.onApply)
        u.jumpMaxPeButton.clicked.connect(lambda: self.call(lambda s: s.jump_to_max_pe(self.table())))
        u.nextPositiveButton.clicked.connect(lambda: self.jumpToPositive(1))
        u.previousPositiveButton.clicked.connect(lambda: self.jumpToPositive(-1))
        u.resultsTableView.connect("selectionChanged()", self.onResultRowSelected)
        u.showChartButton.clicked.connect(self.onShowChart)
        u.heatmapSliceButton.clicked.connect(self.onHeatmapCurrentSlice)
        u.screenFolderButton.clicked.connect(self.onScreenFolder)
        u.screenDatabaseButton.clicked.connect(lambda: self.startWork("Screening the DICOM database", lambda s, st: (
            lambda progress, cancel: s.screen_database(st, progress, cancel))))
        u.loadWorklistRowButton.clicked.connect(self.onLoadWorklistRow)
        u.createLabelsButton.clicked.connect(self.onCreateLabels)
        u.createSegmentationButton.clicked.connect(
            lambda: self.call(lambda s: s.create_lesion_segmentation(self._parameterNode.inputVolume)))
        u.setLabelButton.clicked.connect(self.onSetLabel)
        u.exportButton.clicked.connect(self.onExport)
        u.retrainButton.clicked.connect(self.onRetrain)
        self.initializeParameterNode()

    # parameter node
    def setModelParameter(self, name, text):
        if self._parameterNode:
            setattr(self._parameterNode, name, "" if text == NO_MODEL else text)

    def cleanup(self):
        self.removeObservers()
        if self.work is not None:
            self.work.cancel.set()
        for job in self.fineTuneJobs:
            job.cancel()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first
        self.refreshModelLists()

    def setParameterNode(self, node):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = node
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def refreshModelLists(self):
        try:
            from PETriageSlicer.model_list import model_names, series_model_names

            lists = ((self.ui.stage1ModelComboBox, "stage1Model", model_names(1)),
                     (self.ui.stage2ModelComboBox, "stage2Model", model_names(2)),
                     (self.ui.refinerModelComboBox, "refinerModel", [NO_MODEL] + series_model_names("slice_refiner")),
                     (self.ui.patientModelComboBox, "patientModel",
                      [NO_MODEL] + series_model_names("patient_classifier")))
        except ImportError:  # dependencies not installed yet: filled after the first Apply
            return
        for combo, name, names in lists:
            current = getattr(self._parameterNode, name, "") if self._parameterNode else ""
            combo.clear()
            combo.addItems(names)
            if current:
                combo.setCurrentText(current)

    # helpers
    def table(self):
        from PETriageSlicer.results import results_table

        table = results_table(self._parameterNode.inputVolume)
        if table is None:
            raise RuntimeError("Run Apply first: this volume has no PETriage results.")
        return table

    def call(self, function):
        """Run a quick logic call in the GUI thread, showing any error."""
        self.ui.statusLabel.text = ""
        try:
            with slicer.util.WaitCursor():
                return function(self.logic.scene)
        except Exception as exc:
            logging.exception("PETriage")
            self.ui.statusLabel.text = f"Error: {exc}"
            slicer.util.errorDisplay(str(exc))
            return None

    def startWork(self, label, make):
        """Start ``make(sceneLogic, settings)``'s function on a worker thread (Apply becomes Cancel)."""
        if self.work is not None:
            return
        scene = self.call(lambda s: s)
        if scene is None:
            return
        try:
            settings = self.logic.settings(self._parameterNode)
            function = make(scene, settings)
        except Exception as exc:
            self.ui.statusLabel.text = f"Error: {exc}"
            return
        from PETriageSlicer.background import BackgroundWork

        self.work = BackgroundWork(function, label).start()
        self.ui.applyButton.text = "Cancel"
        self.ui.progressBar.visible = True
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = label
        self.timer.start()

    def onTimer(self):
        for job in list(self.fineTuneJobs):
            self.pollFineTune(job)
        if self.work is None:
            if not self.fineTuneJobs:
                self.timer.stop()
            return
        done, total, message = self.work.progress
        self.ui.progressBar.maximum = max(total, 1)
        self.ui.progressBar.value = done
        self.ui.statusLabel.text = f"{self.work.label}: {message}"
        if not self.work.done:
            return
        work, self.work = self.work, None
        self.ui.applyButton.text = "Apply"
        self.ui.progressBar.visible = False
        if work.error is not None:
            self.ui.statusLabel.text = "Cancelled." if work.cancelled else f"Error: {work.error}"
            if not work.cancelled:
                slicer.util.errorDisplay(f"{work.label} failed: {work.error}")
            return
        finish, self.finish = self.finish, None
        self.ui.statusLabel.text = f"{work.label}: done."
        if finish is not None:
            self.call(lambda s: finish(work.value))

    # triage
    def onApply(self):
        if self.work is not None:  # the button reads Cancel while work runs
            self.work.cancel.set()
            return
        ct = self._parameterNode.inputVolume
        if ct is None:
            self.ui.statusLabel.text = "Select a CT volume first."
            return
        task = self.call(lambda s: s.prepare(ct, self.logic.settings(self._parameterNode)))
        if task is None:
            return
        self.finish = lambda _: self.showResults(task.publish())
        self.startWork(f"Triage of {ct.GetName()}", lambda s, st: (
            lambda progress, cancel: task.compute(progress, cancel)))

    def showResults(self, nodes):
        self.resultNodes = nodes
        ct = self._parameterNode.inputVolume
        verdict, reason, score = (ct.GetAttribute(f"PETriage.{k}") for k in ("verdict", "reason", "pe_score"))
        warnings = json.loads(ct.GetAttribute("PETriage.warnings") or "[]")
        self.ui.verdictLabel.text = f"<b>{verdict}</b>: {reason} (PE score {score})" + "".join(
            f"<br>Warning: {w}" for w in warnings)
        self.ui.resultsTableView.setMRMLTableNode(nodes.table)
        self.ui.labelToSpinBox.maximum = self.ui.labelFromSpinBox.maximum = nodes.table.GetNumberOfRows() - 1
        self.logic.scene.jump_to_max_pe(nodes.table)

    def jumpToPositive(self, step):
        self.call(lambda s: s.jump_to_next_positive(self.table(), step=step))

    def onResultRowSelected(self):
        rows = self.ui.resultsTableView.selectionModel().selectedRows()
        if rows:
            self.call(lambda s: s.jump_to_row(self.table(), rows[0].row()))

    def onHeatmapCurrentSlice(self):
        from PETriageSlicer.navigation import current_slice

        ct = self._parameterNode.inputVolume
        self.call(lambda s: s.heatmaps_for_slices(ct, [current_slice(ct)]))

    def onShowChart(self):
        if self.resultNodes is not None:
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalPlotView)
            slicer.modules.plots.logic().ShowChartInLayout(self.resultNodes.chart)

    # loading and worklist
    def onLoadFolder(self):
        folder = qt.QFileDialog.getExistingDirectory(None, "DICOM folder")
        if folder:
            node = self.call(lambda s: s.load_dicom(folder))
            if node is not None:
                self._parameterNode.inputVolume = node
                slicer.util.setSliceViewerLayers(background=node, fit=True)

    def onLoadFromDatabase(self):
        browser = slicer.modules.dicom.widgetRepresentation().self().browserWidget
        uids = browser.dicomBrowser.selectedSeriesUIDs() if browser else []
        if not uids:
            self.ui.statusLabel.text = "Select a series in the DICOM browser first."
            return
        node = self.call(lambda s: s.load_from_database(uids[0]))
        if node is not None:
            self._parameterNode.inputVolume = node

    def onScreenFolder(self):
        folder = qt.QFileDialog.getExistingDirectory(None, "Folder of CT series")
        if not folder:
            return
        # Screening reads files only; the table node is made in the GUI thread at the end.
        from PETriageSlicer import worklist_table as worklist

        self.finish = lambda rows: self.ui.worklistTableView.setMRMLTableNode(worklist.worklist_table(rows))
        self.startWork("Screening", lambda s, st: (
            lambda progress, cancel: worklist.screen(worklist.folder_sources(folder), s.cascade(st),
                                                     progress, cancel)))

    def onLoadWorklistRow(self):
        table = self.ui.worklistTableView.mrmlTableNode()
        rows = self.ui.worklistTableView.selectionModel().selectedRows()
        if table is None or not rows:
            self.ui.statusLabel.text = "Select a worklist row first."
            return
        node = self.call(lambda s: s.load_worklist_row(table, rows[0].row()))
        if node is not None:
            self._parameterNode.inputVolume = node

    # annotation and retraining
    def labelsTable(self):
        from PETriageSlicer.annotation import LABELS_ROLE

        ct = self._parameterNode.inputVolume
        return ct.GetNodeReference(LABELS_ROLE) if ct else None

    def onCreateLabels(self):
        node = self.call(lambda s: s.create_annotations(self._parameterNode.inputVolume))
        if node is not None:
            self.ui.resultsTableView.setMRMLTableNode(node)

    def onSetLabel(self):
        p = self._parameterNode
        lo, hi = sorted((p.labelFrom, p.labelTo))
        self.call(lambda s: s.set_labels(self.labelsTable() or s.create_annotations(p.inputVolume),
                                         range(lo, hi + 1), p.annotationLabel))

    def onExport(self):
        out = self.ui.exportDirectoryButton.directory
        seg = slicer.mrmlScene.GetFirstNodeByName(f"{self._parameterNode.inputVolume.GetName()} PETriage lesions")
        ct = self._parameterNode.inputVolume
        path = self.call(lambda s: s.export_training_manifest(ct, self.labelsTable(), out, seg))
        if path is not None:
            self.ui.statusLabel.text = f"Exported: {path}"

    def onRetrain(self):
        if self.fineTuneJobs:
            for job in self.fineTuneJobs:
                job.cancel()
            return
        p = self._parameterNode
        manifest = os.path.join(self.ui.exportDirectoryButton.directory, "manifest.csv")
        if not os.path.isfile(manifest):
            self.ui.statusLabel.text = f"Export annotations first ({manifest} does not exist)."
            return
        out = os.path.join(self.ui.exportDirectoryButton.directory, "finetune")
        for stage, model in ((1, p.stage1Model), (2, p.stage2Model)):
            folder = os.path.join(out, f"stage{stage}")
            lesion_loss = None if p.learnFromLesions else 0.0  # None: on when lesions were painted
            job = self.call(lambda s: s.fine_tune(manifest, stage, model, folder, p.epochs,
                                                  lesion_loss=lesion_loss))
            if job is not None:
                self.fineTuneJobs.append(job)
        self.ui.retrainButton.text = "Cancel fine-tuning"
        self.timer.start()

    def pollFineTune(self, job):
        self.ui.retrainProgressBar.value = int(100 * (job.progress or 0))
        if job.running:
            return
        self.fineTuneJobs.remove(job)
        if not self.fineTuneJobs:
            self.ui.retrainButton.text = "Fine-tune both stages from the current models"
        if job.cancelled:
            self.ui.statusLabel.text = "Fine-tuning cancelled."
            return
        name = f"{self._parameterNode.newModelName or 'finetuned'}-stage{job.stage}"
        if self.call(lambda s: job.register(name)) is not None:
            self.ui.statusLabel.text = f"Registered {name}."
            self.refreshModelLists()


class PETriageTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode: Reload and Test, or ctest -R py_PETriage)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TriageSyntheticStudy()

    def test_TriageSyntheticStudy(self):
        import tempfile

        ensureDependencies()
        from PETriageLib.models import build_model, save_checkpoint
        from PETriageLib.phantom import generate_study, write_study
        from PETriageSlicer.logic import PETriageSceneLogic as SceneLogic, TriageSettings

        self.delayDisplay("Generating a small synthetic PE study and two tiny models")
        tmp = tempfile.mkdtemp(prefix="petriage-selftest-")
        study = generate_study(7, matrix=128, slices=24, pe=True, contrast="ctpa")
        write_study(study, os.path.join(tmp, "study"))
        paths = []
        for stage, classes in ((1, list(STAGE_CLASSES[1])), (2, list(STAGE_CLASSES[2]))):
            model = build_model("cbamdrn_d22", ("vascular", "lung"), width=0.25)
            meta = {"class_names": classes, "input_size": 64, "threshold": 0.0 if stage == 1 else 0.5}
            paths.append(str(save_checkpoint(os.path.join(tmp, f"stage{stage}.pt"), model, meta)))
        logic = SceneLogic(slicer.mrmlScene)
        ct = logic.load_dicom(os.path.join(tmp, "study"))
        self.delayDisplay("Triage")
        nodes = logic.run(ct, TriageSettings(paths[0], paths[1], device="cpu", top_k=2))
        self.assertEqual(nodes.table.GetNumberOfRows(), ct.GetImageData().GetDimensions()[2])
        self.assertEqual(set(nodes.heatmaps), {"vascular", "lung"})
        red = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceCompositeNodeRed")
        self.assertIn(red.GetForegroundVolumeID(), [n.GetID() for n in nodes.heatmaps.values()])
        k = logic.jump_to_max_pe(nodes.table)
        m = vtk.vtkMatrix4x4()
        ct.GetIJKToRASMatrix(m)
        z = m.MultiplyPoint([0, 0, k, 1])[2]
        self.assertAlmostEqual(slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed").GetSliceOffset(), z, places=3)
        self.delayDisplay("Test passed")
