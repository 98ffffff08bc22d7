"""PETriageSceneLogic: the one object the widget and the Python console use.

Triage is split for the GUI: ``prepare`` (main thread: copy voxels out of the node),
``TriageTask.compute`` (PETriageLib's screening loop, no MRML access) and ``TriageTask.publish``
(main thread: nodes). ``run`` does all three in a row for scripts; the panel runs the compute step
in a child process instead (``start_triage`` / ``start_screening``, see triage_jobs.py).

Importing this module raises install.DependenciesMissing (an ImportError saying what to run) when
torch or PETriage's packages are not installed yet.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import slicer

from PETriageSlicer.install import require

require()  # a clear instruction instead of a ModuleNotFoundError deep inside the first triage

from PETriageLib.progress import Progress  # noqa: E402

from PETriageSlicer import annotation, navigation, worklist_table  # noqa: E402
from PETriageSlicer.embolus_nodes import EmbolusNodes, add_embolus_nodes  # noqa: E402
from PETriageSlicer.embolus_report import write_embolus_report  # noqa: E402
from PETriageSlicer.geometry import volume_from_node  # noqa: E402
from PETriageSlicer.loading import load_dicom_folder, load_from_dicom_database  # noqa: E402
from PETriageSlicer.model_list import resolve  # noqa: E402
from PETriageSlicer.results import ResultNodes, add_results, results_table, update_heatmaps  # noqa: E402
from PETriageSlicer.settings import TriageSettings, build_cascade_for  # noqa: E402

log = logging.getLogger(__name__)



class TriageTask:
    """One triage of one volume node, runnable off the GUI thread between prepare and publish."""

    def __init__(self, logic: "PETriageSceneLogic", ct: Any, settings: TriageSettings) -> None:
        self.logic, self.ct, self.settings = logic, ct, settings
        self.volume = volume_from_node(ct)  # a copy: the worker never touches MRML
        self.result: Any = None  # PETriageLib.triage.result.TriageResult, once computed
        self.heatmaps: Any = None  # PETriageLib.explain.heatmaps.Heatmaps, when Grad-CAM ran

    def compute(self, progress: Progress | None = None, cancel: Any = None) -> None:
        from PETriageLib.screening.one_series import ScreenOptions, screen_volume

        options = ScreenOptions(cam=self.settings.cam, top_k=self.settings.top_k)
        screened = screen_volume(self.logic.cascade(self.settings), self.volume, options,
                                 progress=progress, cancel=cancel)
        self.result, self.heatmaps = screened.result, screened.heatmaps

    def publish(self, report_dir: "str | Path | None" = None) -> ResultNodes:
        """Result nodes; with ``report_dir`` (a report folder of this run) also its embolus nodes.
        In-process, a result whose embolus segmentation ran goes through a report folder too, so
        both paths load the mask the same way."""
        if self.result is None:
            raise RuntimeError("compute() has not finished")
        self.logic.last_tasks[self.ct.GetID()] = self  # kept for Grad-CAM on demand
        maps = {} if self.heatmaps is None else self.heatmaps.volumes
        nodes = add_results(self.ct, self.result, maps, self.settings.display)
        if report_dir is not None:
            nodes.embolus = add_embolus_nodes(self.ct, report_dir, nodes.table)
        elif getattr(self.result, "embolus", None) is not None:
            with tempfile.TemporaryDirectory(prefix="petriage-report-") as tmp:
                nodes.embolus = add_embolus_nodes(self.ct, write_embolus_report(self.result, tmp), nodes.table)
        return nodes


class PETriageSceneLogic:
    """Scene logic of the PETriage module; works on ``scene`` (default slicer.mrmlScene)."""

    def __init__(self, scene: Any = None) -> None:
        self.scene = scene or slicer.mrmlScene
        self._cascade_key: tuple | None = None
        self._cascade: Any = None
        self.last_tasks: dict[str, TriageTask] = {}  # CT node ID -> its latest published triage
        # Node IDs are reused after a scene close: a new CT must never get the old CT's run.
        self._close_observer = self.scene.AddObserver(slicer.vtkMRMLScene.EndCloseEvent, self._on_scene_closed)

    def _on_scene_closed(self, caller: Any = None, event: Any = None) -> None:
        self.clear_caches()

    def clear_caches(self) -> None:
        """Forget every per-CT run (called on scene close)."""
        self.last_tasks.clear()

    # loading
    def load_dicom(self, path: str, series_uid: str | None = None) -> Any:
        return load_dicom_folder(path, series_uid, scene=self.scene)

    def load_from_database(self, series_uid: str) -> Any:
        return load_from_dicom_database(series_uid)

    # triage
    def cascade(self, settings: TriageSettings) -> Any:
        """The Cascade for these models/device/threshold, built once and reused."""
        key = settings.cascade_key()
        if key != self._cascade_key:
            self._cascade = build_cascade_for(settings)
            self._cascade_key = key
        return self._cascade

    def prepare(self, ct: Any, settings: TriageSettings) -> TriageTask:
        return TriageTask(self, ct, settings)

    def run(self, ct: Any, settings: TriageSettings, progress: Progress | None = None,
            cancel: Any = None) -> ResultNodes:
        """Triage ``ct`` and add the results to the scene (blocking; for scripts and tests)."""
        task = self.prepare(ct, settings)
        task.compute(progress, cancel)
        return task.publish()

    def heatmaps_for_slices(self, ct: Any, slices: list[int], progress: Progress | None = None) -> dict:
        """Grad-CAM on demand for any slices of the CT's latest run, written into its heatmap volumes."""
        task = self.last_tasks.get(ct.GetID())
        if task is None or task.ct is not ct:
            raise RuntimeError(f"{ct.GetName()} has not been triaged in this session: run it first")
        from PETriageLib.explain.heatmaps import compute_heatmaps

        maps = compute_heatmaps(self.cascade(task.settings), task.result, list(slices), stage=2, progress=progress)
        return update_heatmaps(ct, maps.volumes, list(slices), task.settings.display)

    def load_embolus_report(self, ct: Any, report_dir: str) -> EmbolusNodes:
        """The embolus segmentation of a report folder (``petriage triage --out``) for ``ct``, with the
        clot volume in its results table; EmbolusRefused for a mask on another grid (nothing added)."""
        return add_embolus_nodes(ct, report_dir, results_table(ct))

    def export_dicom_results(self, ct: Any, folder: str) -> Any:
        """The DICOM results (SR, key images, heatmap maps) of ``ct``'s latest triage into ``folder``;
        a DicomResults listing the files (none for a series the gate refused)."""
        from PETriageSlicer.dicom_export import export_dicom_results

        task = self.last_tasks.get(ct.GetID())
        if task is None or task.ct is not ct:
            raise RuntimeError(f"{ct.GetName()} has not been triaged in this session: run it first")
        return export_dicom_results(ct, task.result, task.heatmaps, folder)

    # navigation
    jump_to_slice = staticmethod(navigation.jump_to_slice)
    jump_to_row = staticmethod(navigation.jump_to_row)
    jump_to_max_pe = staticmethod(navigation.jump_to_max_pe)
    jump_to_next_positive = staticmethod(navigation.jump_to_next_positive)

    # worklist
    def screen_folder(self, folder: str, settings: TriageSettings, progress: Progress | None = None,
                      cancel: Any = None) -> Any:
        return worklist_table.screen_folder(folder, self.cascade(settings), self.scene, progress, cancel)

    def screen_database(self, settings: TriageSettings, progress: Progress | None = None, cancel: Any = None) -> Any:
        """Inside Slicer, blocking, on the GUI thread (the DICOM database is a Qt SQL connection)."""
        return worklist_table.screen_database(self.cascade(settings), progress, cancel)

    # the same in a child process (what the panel uses): the GUI thread polls and publishes
    def start_triage(self, ct: Any, settings: TriageSettings) -> Any:
        from PETriageSlicer.triage_jobs import TriageJob

        return TriageJob(self, ct, settings).start()

    def start_screening(self, sources: list, settings: TriageSettings, label: str = "Screening") -> Any:
        """``sources``: worklist_table.ct_folder_sources(folder) or database_sources() (GUI thread)."""
        from PETriageSlicer.triage_jobs import ScreenJob

        return ScreenJob(sources, settings, label=label).start()

    load_worklist_row = staticmethod(worklist_table.load_row)

    # annotation and retraining
    create_annotations = staticmethod(annotation.create_annotations)
    set_labels = staticmethod(annotation.set_labels)
    create_lesion_segmentation = staticmethod(annotation.create_lesion_segmentation)
    export_training_manifest = staticmethod(annotation.export_training_manifest)

    def fine_tune(self, manifest: str, stage: int, init_from: str, out_dir: str, epochs: int = 3,
                  extra_args: tuple = (), lesion_loss: "float | None" = None) -> Any:
        """Start fine-tuning ``init_from`` (a model name or path) in a background process.

        ``lesion_loss``: weight of the lesion-map loss on the painted lesion masks; None = 1 when
        any exported series has a painted mask, else off.
        """
        from PETriageSlicer.finetune import FineTuneJob, painted_lesions

        if lesion_loss is None:
            painted = painted_lesions(manifest)
            lesion_loss = 1.0 if painted else 0.0
            log.info("fine-tuning stage %d: %d series with painted lesions, lesion-map loss %s",
                     stage, painted, "on" if painted else "off")
        return FineTuneJob(manifest, stage, resolve(init_from)[0], out_dir, epochs, extra_args, lesion_loss).start()
