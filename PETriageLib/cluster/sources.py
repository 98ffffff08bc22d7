"""The series of an archive, as tasks: from a folder tree, a manifest of folders, or a DICOMweb
server. A task is small (UIDs and where to read the files), so a driver can hold millions."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Sequence

from PETriageLib.progress import Progress
from PETriageLib.cluster.dicomweb import dicomweb_tasks
from PETriageLib.cluster.task import SeriesTask
from PETriageLib.screening.many_series import folder_sources

log = logging.getLogger(__name__)


def folder_tasks(path: "str | Path", progress: Progress | None = None) -> list[SeriesTask]:
    """Every DICOM series under ``path`` (headers only), with absolute file paths: a worker has its
    own working folder."""
    return [SeriesTask.from_source(s) for s in folder_sources(Path(path).resolve(), progress)]


def manifest_tasks(path: "str | Path", progress: Progress | None = None) -> list[SeriesTask]:
    """A CSV manifest with a ``path`` column: each row a folder (relative paths are read from the
    manifest's folder), every series in it a task."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "path" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: a screening manifest needs a 'path' column, found {reader.fieldnames}")
        folders = [path.parent / row["path"] for row in reader if row["path"].strip()]
    tasks = []
    for folder in folders:
        if not folder.exists():
            raise FileNotFoundError(f"{path}: the manifest names {folder}, which does not exist")
        tasks += folder_tasks(folder, progress)
    return tasks


def unique_tasks(tasks: Sequence[SeriesTask]) -> list[SeriesTask]:
    """One task per SeriesInstanceUID (the store's key): the first kept, the others said."""
    seen: dict[str, SeriesTask] = {}
    for t in tasks:
        if t.series_uid in seen:
            log.warning("series %s found twice (%s and %s): screened once", t.series_uid, seen[t.series_uid].source,
                        t.source)
            continue
        seen[t.series_uid] = t
    return list(seen.values())


def open_source(spec: str, progress: Progress | None = None) -> list[SeriesTask]:
    """The tasks of ``spec``: an http(s) DICOMweb root, a .csv manifest, or a folder tree."""
    if spec.startswith(("http://", "https://")):
        return unique_tasks(dicomweb_tasks(spec))
    path = Path(spec)
    if path.is_file() and path.suffix.lower() == ".csv":
        return unique_tasks(manifest_tasks(path, progress))
    if not path.exists():
        raise FileNotFoundError(f"screening source {spec} is neither a DICOMweb URL nor an existing path")
    return unique_tasks(folder_tasks(path, progress))
