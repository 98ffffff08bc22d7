"""The PETriage panel: binds the .ui to the parameter node, runs triage and screening in child processes,
polls them on the GUI thread with a QTimer, and publishes their results on the same thread.

Slicer/CTK calls used here, each checked against its source (see Testing/slicer_module/test_panel_api.py):
qMRMLTableView.tableModel/sortFilterProxyModel/selectionChanged (Libs/MRML/Widgets/qMRMLTableView.h),
qMRMLTableModel.mrmlTableRowIndex (Libs/MRML/Widgets/qMRMLTableModel.h), ctkDICOMBrowser.dicomTableManager and
ctkDICOMTableManager.currentSeriesSelection (CTK Libs/DICOM/Widgets/ctkDICOMBrowser.h, ctkDICOMTableManager.h),
ctkDirectoryButton.directory/directoryChanged (CTK Libs/Widgets/ctkDirectoryButton.h).
"""
from __future__ import annotations

import json
import os

import qt
import slicer
import vtk
from slicer.util import VTKObservationMixin

from PETriagePanel.panel_annotation import AnnotationSection
from PETriagePanel.panel_parameters import MODEL_COMBOS, NO_MODEL, OPTIONAL_MODELS, settings_from

# Buttons that must not start a second job (or run Grad-CAM on the GUI thread) while one runs.
BUSY_DISABLED = ("screenFolderButton", "screenDatabaseButton", "heatmapSliceButton", "retrainButton",
                 "installDependenciesButton", "loadFolderButton", "loadDatabaseButton", "loadWorklistRowButton")


def selected_table_row(view) -> int:
    """The MRML table row of the view's current cell (a click selects a cell, not always a row),
    through the sort proxy and the header-row rule (qMRMLTableModel::mrmlTableRowIndex); -1 if none."""
    index = view.selectionModel().currentIndex() if view.selectionModel() else None
    if index is None or not index.isValid():
        return -1
    return view.tableModel().mrmlTableRowIndex(view.sortFilterProxyModel().mapToSource(index))


def import_into_dicom_database(folder: str) -> bool:
    """Index ``folder`` into Slicer's DICOM database (DICOMUtils.importDicom, Slicer
    Modules/Scripted/DICOM/DICOMLib/DICOMUtils.py); False where there is none (no DICOM module)."""
    if getattr(slicer, "dicomDatabase", None) is None:
        return False
    from DICOMLib import DICOMUtils

    DICOMUtils.importDicom(folder)
    return True


class PETriagePanel(AnnotationSection, VTKObservationMixin):
    """The panel's behaviour; PETriageWidget (PETriage.py) creates it in setup()."""

    def __init__(self, widget, ui, logic) -> None:
        VTKObservationMixin.__init__(self)
        self.widget, self.ui, self.logic = widget, ui, logic
        self._parameterNode = None
        self._guiTag = None
        self.job = None  # the running triage or screening job (one at a time)
        self.finish = None  # what publishes the job's result (GUI thread)
        self.installer = None
        self.fineTuneJobs = []
        self.resultNodes = None
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.onTimer)
        self.connect()

    # set-up
    def connect(self) -> None:
        u = self.ui
        for widget, name in MODEL_COMBOS.items():
            combo = getattr(u, widget)
            combo.setEditable(True)  # a checkpoint path may be typed in
            combo.currentTextChanged.connect(lambda text, name=name: self.setModelParameter(name, text))
        for view in (u.resultsTableView, u.worklistTableView):
            view.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
            view.setSelectionMode(qt.QAbstractItemView.SingleSelection)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        u.installDependenciesButton.clicked.connect(self.onInstallDependencies)
        u.loadFolderButton.clicked.connect(self.onLoadFolder)
        u.loadDatabaseButton.clicked.connect(self.onLoadFromDatabase)
        u.applyButton.clicked.connect(self.onApply)
        u.jumpMaxPeButton.clicked.connect(lambda: self.call(lambda s: s.jump_to_max_pe(self.table())))
        u.nextPositiveButton.clicked.connect(lambda: self.call(lambda s: s.jump_to_next_positive(self.table(), step=1)))
        u.previousPositiveButton.clicked.connect(
            lambda: self.call(lambda s: s.jump_to_next_positive(self.table(), step=-1)))
        u.resultsTableView.connect("selectionChanged()", self.onResultRowSelected)
        u.showChartButton.clicked.connect(self.onShowChart)
        u.branchComboBox.currentTextChanged.connect(self.onBranchChanged)
        u.heatmapSliceButton.clicked.connect(self.onHeatmapCurrentSlice)
        u.exportDicomButton.clicked.connect(self.onExportDicom)
        u.screenFolderButton.clicked.connect(self.onScreenFolder)
        u.screenDatabaseButton.clicked.connect(self.onScreenDatabase)
        u.loadWorklistRowButton.clicked.connect(self.onLoadWorklistRow)
        u.createLabelsButton.clicked.connect(self.onCreateLabels)
        u.createSegmentationButton.clicked.connect(
            lambda: self.call(lambda s: s.create_lesion_segmentation(self._parameterNode.inputVolume)))
        u.setLabelButton.clicked.connect(self.onSetLabel)
        u.exportDirectoryButton.directoryChanged.connect(self.onExportFolderChanged)
        u.exportButton.clicked.connect(self.onExport)
        u.retrainButton.clicked.connect(self.onRetrain)

    def cleanup(self) -> None:
        self.removeObservers()
        self.cancelJob("Cancelled: the module was closed.")
        for job in self.fineTuneJobs:
            job.cancel()
        if self.installer is not None:
            self.installer.cancel()

    # parameter node
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())  # typed: PETriageParameterNode
        p = self._parameterNode
        if not p.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                p.inputVolume = first
        if not p.exportFolder:  # never Slicer's working directory
            p.exportFolder = os.path.join(slicer.app.defaultScenePath, "PETriage")
        self.ui.exportDirectoryButton.directory = p.exportFolder
        self.refreshModelLists()

    def setParameterNode(self, node) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._guiTag)
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = node
        if node:
            self._guiTag = node.connectGui(self.ui)
            self.addObserver(node.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Parameter -> model combo (the other direction is currentTextChanged): a model set from the
        console or a loaded scene shows in the panel."""
        for widget, name in MODEL_COMBOS.items():
            combo = getattr(self.ui, widget)
            value = getattr(self._parameterNode, name) or (NO_MODEL if name in OPTIONAL_MODELS else "")
            if value and combo.currentText != value:
                wasBlocked = combo.blockSignals(True)
                combo.setCurrentText(value)
                combo.blockSignals(wasBlocked)

    def disconnectGui(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None

    def setModelParameter(self, name: str, text: str) -> None:
        if self._parameterNode:
            setattr(self._parameterNode, name, "" if text == NO_MODEL else text)

    def onExportFolderChanged(self, folder: str) -> None:
        if self._parameterNode and folder not in ("", "."):
            self._parameterNode.exportFolder = folder

    def onSceneStartClose(self, caller, event) -> None:
        self.cancelJob("Cancelled: the scene was closed.")  # its CT is about to go
        self.resultNodes = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.widget.parent.isEntered:
            self.initializeParameterNode()

    def dependenciesMissing(self) -> list:
        from PETriageSlicer.install import missing_pip_packages, missing_torch

        return missing_torch() + missing_pip_packages()

    def refreshModelLists(self) -> None:
        """Fill the model combos (after installation too: the lists need PETriageLib's model zoo)."""
        if self.dependenciesMissing():
            self.ui.statusLabel.text = "Press 'Install dependencies' first (PyTorch and PETriage's packages)."
            return
        from PETriageSlicer.model_list import model_names, segmentation_model_names, series_model_names

        u = self.ui
        lists = ((u.stage1ModelComboBox, "stage1Model", model_names(1)),
                 (u.stage2ModelComboBox, "stage2Model", model_names(2)),
                 (u.refinerModelComboBox, "refinerModel", [NO_MODEL] + series_model_names("slice_refiner")),
                 (u.patientModelComboBox, "patientModel", [NO_MODEL] + series_model_names("patient_classifier")),
                 (u.segModelComboBox, "segModel", [NO_MODEL] + segmentation_model_names()),
                 (u.nctModelComboBox, "nctModel", [NO_MODEL] + segmentation_model_names("cross_phase")))
        for combo, name, names in lists:
            current = getattr(self._parameterNode, name, "") if self._parameterNode else ""
            wasBlocked = combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            combo.blockSignals(wasBlocked)
            combo.setCurrentText(current or (names[0] if names else ""))
            self.setModelParameter(name, combo.currentText)

    # helpers
    def table(self):
        from PETriageSlicer.results import results_table

        table = results_table(self._parameterNode.inputVolume)
        if table is None:
            raise RuntimeError("Run Apply first: this volume has no PETriage results.")
        return table

    def call(self, function):
        """Run a quick logic call on the GUI thread, showing any error (slicer.util.tryWithErrorDisplay)."""
        self.ui.statusLabel.text = ""
        result = None
        with slicer.util.tryWithErrorDisplay("PETriage failed.", waitCursor=True):
            result = function(self.logic.scene)
        return result

    def setBusy(self, busy: bool) -> None:
        for name in BUSY_DISABLED:
            getattr(self.ui, name).enabled = not busy
        self.ui.applyButton.text = "Cancel" if busy else "Apply"
        self.ui.progressBar.visible = busy
        if busy:
            self.ui.progressBar.value = 0
            self.timer.start()

    # jobs: one at a time, polled on the GUI thread
    def startJob(self, makeJob, finish) -> None:
        if self.job is not None:
            self.ui.statusLabel.text = f"{self.job.label} is running: wait for it or cancel it first."
            return
        job = self.call(makeJob)
        if job is None:
            return
        self.job, self.finish = job, finish
        self.ui.statusLabel.text = job.label
        self.setBusy(True)

    def cancelJob(self, message: str) -> None:
        if self.job is None:
            return
        job, self.job, self.finish = self.job, None, None
        job.cancel()  # kills the child; nothing was added to the scene
        self.setBusy(False)
        self.ui.statusLabel.text = message

    def onTimer(self) -> None:
        for job in list(self.fineTuneJobs):
            self.pollFineTune(job)
        if self.installer is not None and self.installer.poll():
            self.installer = None
        if self.installer is not None:
            step = self.installer.process.progress
            self.ui.statusLabel.text = step.message or self.installer.process.label
        if self.job is None:
            if not self.fineTuneJobs and self.installer is None:
                self.timer.stop()
            return
        ended = self.job.poll()
        step = self.job.process.progress
        self.ui.progressBar.maximum = max(step.total, 1)
        self.ui.progressBar.value = step.done
        self.ui.statusLabel.text = f"{self.job.label}: {step.message}"
        if not ended:
            return
        job, finish = self.job, self.finish
        self.job = self.finish = None
        self.setBusy(False)
        if self.call(lambda s: finish(job)) is not None:
            self.ui.statusLabel.text = f"{job.label}: done."

    # dependencies
    def onInstallDependencies(self) -> None:
        from PETriagePanel.panel_install import DependencyInstaller

        def done(error):
            if error:
                slicer.util.errorDisplay(error)
                self.ui.statusLabel.text = "Installation failed."
            else:
                self.ui.statusLabel.text = "Dependencies installed."
                self.refreshModelLists()

        installer = DependencyInstaller(done)
        with slicer.util.tryWithErrorDisplay("Installing PETriage's dependencies failed."):
            if installer.start():
                self.installer = installer
                self.timer.start()
                return
            done(None)

    # triage
    def onApply(self) -> None:
        if self.job is not None:  # the button reads Cancel while a job runs
            self.cancelJob("Cancelled.")
            return
        if self.dependenciesMissing():
            self.onInstallDependencies()
            return
        ct = self._parameterNode.inputVolume
        if ct is None:
            self.ui.statusLabel.text = "Select a CT volume first."
            return
        if not (self._parameterNode.stage1Model and self._parameterNode.stage2Model):
            self.refreshModelLists()
        settings = settings_from(self._parameterNode)
        self.startJob(lambda s: s.start_triage(ct, settings), lambda job: self.showResults(job.publish()))

    def showResults(self, nodes):
        self.resultNodes = nodes
        ct = self._parameterNode.inputVolume
        verdict, reason, score = (ct.GetAttribute(f"PETriage.{k}") for k in ("verdict", "reason", "pe_score"))
        warnings = json.loads(ct.GetAttribute("PETriage.warnings") or "[]")
        self.ui.verdictLabel.text = f"<b>{verdict}</b>: {reason} (PE score {score})" + "".join(
            f"<br>Warning: {w}" for w in warnings)
        if nodes.embolus is not None:  # an embolus segmentation ran: its clot line, as in summary.md
            self.ui.verdictLabel.text += "".join(f"<br>{line}" for line in nodes.embolus.lines)
        self.ui.resultsTableView.setMRMLTableNode(nodes.table)
        self.ui.labelToSpinBox.maximum = self.ui.labelFromSpinBox.maximum = nodes.table.GetNumberOfRows() - 1
        self.fillBranches(list(nodes.heatmaps))
        self.logic.scene.jump_to_max_pe(nodes.table)
        return nodes

    def fillBranches(self, branches) -> None:
        """The branch combo lists the branches of the models that ran (shipped models: pe, lung)."""
        combo, wanted = self.ui.branchComboBox, self._parameterNode.foregroundBranch
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.addItems(branches)
        combo.blockSignals(wasBlocked)
        if wanted in branches:
            combo.setCurrentText(wanted)

    def onBranchChanged(self, branch: str) -> None:
        p = self._parameterNode
        if not p or not branch:
            return
        p.foregroundBranch = branch
        if p.inputVolume is not None:
            from PETriageSlicer.results import show_branch

            self.call(lambda s: show_branch(p.inputVolume, branch, p.opacity))

    def onResultRowSelected(self):
        row = selected_table_row(self.ui.resultsTableView)
        table = self.ui.resultsTableView.mrmlTableNode()
        if row >= 0 and table is not None:
            self.call(lambda s: s.jump_to_row(table, row))

    def onHeatmapCurrentSlice(self):
        from PETriageSlicer.navigation import current_slice

        ct = self._parameterNode.inputVolume
        self.call(lambda s: s.heatmaps_for_slices(ct, [current_slice(ct)]))

    def onExportDicom(self):
        """The current result's DICOM objects (SR, key images, heatmap maps) into a folder, then into
        Slicer's DICOM database when the box is ticked."""
        ct = self._parameterNode.inputVolume
        if not ct:
            self.ui.statusLabel.text = "Select the triaged CT volume first."
            return
        folder = qt.QFileDialog.getExistingDirectory(None, "Folder for the DICOM results")
        if not folder:
            return
        written = self.call(lambda s: s.export_dicom_results(ct, folder))
        if written is None:
            return
        message = f"{len(written.files)} DICOM object(s) written to {folder}"
        if written.files and self.ui.importDicomCheckBox.checked:
            imported = False
            with slicer.util.tryWithErrorDisplay("Importing the DICOM results into the DICOM database failed."):
                imported = import_into_dicom_database(folder)
            message += "; imported into the DICOM database" if imported else "; no DICOM database to import into"
        self.ui.statusLabel.text = message + "."

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

    def selectedDatabaseSeries(self) -> list:
        """Series UIDs selected in the DICOM module's browser (ctkDICOMBrowser's table manager)."""
        browser = slicer.modules.dicom.widgetRepresentation().self().browserWidget
        dicomBrowser = getattr(browser, "dicomBrowser", None) if browser else None
        if dicomBrowser is None or not hasattr(dicomBrowser, "dicomTableManager"):
            return []
        return list(dicomBrowser.dicomTableManager().currentSeriesSelection())

    def onLoadFromDatabase(self):
        uids = self.selectedDatabaseSeries()
        if not uids:
            self.ui.statusLabel.text = ("Select a series in the DICOM module's browser table first "
                                        "(or load it with the DICOM module and pick it as CT volume).")
            return
        node = self.call(lambda s: s.load_from_database(uids[0]))
        if node is not None:
            self._parameterNode.inputVolume = node

    def startScreening(self, sources, label):
        settings = settings_from(self._parameterNode)
        self.startJob(lambda s: s.start_screening(sources, settings, label), lambda job: self.showWorklist(job.publish()))

    def showWorklist(self, table):
        self.ui.worklistTableView.setMRMLTableNode(table)
        return table

    def onScreenFolder(self):
        folder = qt.QFileDialog.getExistingDirectory(None, "Folder of CT series")
        if folder:
            from PETriageSlicer.worklist_table import ct_folder_sources

            sources = self.call(lambda s: ct_folder_sources(folder))
            if sources is not None:
                self.startScreening(sources, f"Screening {folder}")

    def onScreenDatabase(self):
        from PETriageSlicer.worklist_table import database_sources

        sources = self.call(lambda s: database_sources())  # Qt SQL: on the GUI thread, before the child starts
        if sources is not None:
            self.startScreening(sources, "Screening the DICOM database")

    def onLoadWorklistRow(self):
        table = self.ui.worklistTableView.mrmlTableNode()
        row = selected_table_row(self.ui.worklistTableView)
        if table is None or row < 0:
            self.ui.statusLabel.text = "Select a worklist row first."
            return
        node = self.call(lambda s: s.load_worklist_row(table, row))
        if node is not None:
            self._parameterNode.inputVolume = node
