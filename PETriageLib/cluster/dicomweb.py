"""A DICOMweb server as a source: QIDO-RS lists its series, WADO-RS fetches one (dicomweb-client)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PETriageLib.cluster.task import SeriesTask

# DICOM tags as QIDO-RS JSON keys
STUDY_UID, SERIES_UID, MODALITY, DESCRIPTION, INSTANCES = "0020000D", "0020000E", "00080060", "0008103E", "00201209"


def client(url: str) -> Any:
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=url.rstrip("/"))


def _value(item: dict, tag: str, default: Any = "") -> Any:
    values = item.get(tag, {}).get("Value") or [default]
    return values[0]


def dicomweb_tasks(url: str) -> list[SeriesTask]:
    """Every series on the server (studies first, then each study's series), as tasks."""
    web = client(url)
    tasks = []
    for study in web.search_for_studies(get_remaining=True):
        study_uid = _value(study, STUDY_UID)
        for s in web.search_for_series(study_uid, fields=[MODALITY, DESCRIPTION, INSTANCES], get_remaining=True):
            uid = _value(s, SERIES_UID)
            tasks.append(SeriesTask(uid, str(_value(s, DESCRIPTION)), str(_value(s, MODALITY)),
                                    int(_value(s, INSTANCES, 0)), dicomweb_url=url, study_uid=study_uid,
                                    source=f"{url.rstrip('/')}/studies/{study_uid}/series/{uid}"))
    return tasks


def fetch_series(task: SeriesTask, dest: "str | Path") -> list[str]:
    """WADO-RS: the series' instances written as files in ``dest``; their paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for n, ds in enumerate(client(task.dicomweb_url).iter_series(task.study_uid, task.series_uid)):
        path = dest / f"{n:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(str(path))
    if not files:
        raise FileNotFoundError(f"{task.source}: the server returned no instances")
    return files
