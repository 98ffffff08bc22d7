"""The panel's annotation and retraining section: labels, lesion segmentation, export to a training
manifest (the export folder is the parameter node's, never "."), fine-tuning both stages in child
processes and registering the new versions. Mixed into PETriagePanel (panel_widget.py)."""
from __future__ import annotations

import os

import slicer


class AnnotationSection:
    """Needs the panel's ``ui``, ``_parameterNode``, ``call``, ``timer``, ``fineTuneJobs`` and ``refreshModelLists``."""

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

    def exportFolder(self) -> str:
        from PETriageSlicer.settings import output_folder

        return str(output_folder(self._parameterNode.exportFolder))

    def onExport(self):
        ct = self._parameterNode.inputVolume
        seg = slicer.mrmlScene.GetFirstNodeByName(f"{ct.GetName()} PETriage lesions") if ct else None
        path = self.call(lambda s: s.export_training_manifest(ct, self.labelsTable(), self.exportFolder(), seg))
        if path is not None:
            self.ui.statusLabel.text = f"Exported: {path}"

    def onRetrain(self):
        if self.fineTuneJobs:
            for job in self.fineTuneJobs:
                job.cancel()
            return
        p = self._parameterNode
        folder = self.call(lambda s: self.exportFolder())
        if folder is None:
            return
        manifest = os.path.join(folder, "manifest.csv")
        if not os.path.isfile(manifest):
            self.ui.statusLabel.text = f"Export annotations first ({manifest} does not exist)."
            return
        for stage, model in ((1, p.stage1Model), (2, p.stage2Model)):
            out = os.path.join(folder, "finetune", f"stage{stage}")
            lesion_loss = None if p.learnFromLesions else 0.0  # None: on when lesions were painted
            job = self.call(lambda s: s.fine_tune(manifest, stage, model, out, p.epochs, lesion_loss=lesion_loss))
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
