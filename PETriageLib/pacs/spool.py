"""Received instances into the spool: each file written atomically under
SPOOL/instances/<series UID>/<SOP instance UID>.dcm, then recorded in the queue. An instance whose
pixel data cannot be decoded is kept and recorded as skipped with the reason, so one bad file
never stops the series (or the listener)."""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from PETriageLib.atomic import atomic_write
from PETriageLib.pacs.series_queue import Received, SeriesQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spooled:
    path: Path | None
    received: Received
    skipped: str | None = None


def uid_name(uid: str) -> str:
    """A file name for a UID: the UID itself when it is a valid one (digits and dots), else its hash."""
    return uid if re.fullmatch(r"[0-9.]{1,64}", uid) else "x" + hashlib.sha1(uid.encode()).hexdigest()


def header_of(ds: Dataset) -> dict:
    return {"study_uid": str(ds.get("StudyInstanceUID", "")), "patient_id": str(ds.get("PatientID", "")),
            "modality": str(ds.get("Modality", "")), "description": str(ds.get("SeriesDescription", ""))}


def pixel_problem(ds: Dataset) -> str | None:
    """Why an image instance's pixel data cannot be used, or None (instances without pixels pass)."""
    if "PixelData" not in ds:
        return None
    try:
        ds.pixel_array
    except Exception as exc:  # any decoder error means this file cannot be read
        return f"pixel data cannot be decoded: {exc}"
    return None


def spool_instance(spool: Path, queue: SeriesQueue, ds: Dataset, encoded: bytes, calling_ae: str) -> Spooled:
    """Write one received instance (``encoded``: the whole file, preamble and meta included) and record it."""
    sop, series = str(ds.SOPInstanceUID), str(ds.get("SeriesInstanceUID") or "no-series-uid")
    if queue.known(sop):
        return Spooled(None, Received(False))
    path = spool / "instances" / uid_name(series) / f"{uid_name(sop)}.dcm"
    atomic_write(path, lambda tmp: tmp.write_bytes(encoded))
    skipped = pixel_problem(ds)
    if skipped:
        log.warning("%s: %s (instance kept, not triaged)", path.name, skipped)
    return Spooled(path, queue.record_instance(sop, series, str(path), header_of(ds), calling_ae, skipped), skipped)
