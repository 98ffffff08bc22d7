"""Scan files, read DICOM headers (no pixels) and group the instances into series.

Grouping uses SeriesInstanceUID as it is written, valid DICOM UID or not (real exports carry
UUID strings); instances without one are grouped per folder. Within a series, instances are
sorted by their position along the slice normal, never by file name or InstanceNumber.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from PETriageLib.errors import SeriesError
from PETriageLib.ingest import header
from PETriageLib.ingest.limits import (BITS_ALLOCATED, MAX_ABS_INTERCEPT, MAX_IMAGE_SIDE, MAX_PIXEL_MM,
                                       MAX_RESCALE_SLOPE)
from PETriageLib.progress import Progress

log = logging.getLogger(__name__)


_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"}  # CT, enhanced CT
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
IMAGE_SOP_CLASSES = CT_SOP_CLASSES | {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", SECONDARY_CAPTURE_PREFIX}


def is_valid_uid(uid: str) -> bool:
    return bool(uid) and len(uid) <= 64 and bool(_UID_RE.match(uid))


def name_based_uid(name: str, namespace: uuid.UUID = uuid.NAMESPACE_OID) -> str:
    """A '2.25.<UUID>' UID (DICOM PS3.5 B.2) from a name-based UUID: same name, same UID."""
    return f"2.25.{uuid.uuid5(namespace, name).int}"


@dataclass
class Instance:
    """Header facts of one DICOM file needed to group, sort and check it."""

    path: str
    series_uid: str
    sop_uid: str
    modality: str
    sop_class: str
    rows: int
    cols: int
    frames: int
    position: tuple[float, float, float] | None  # ImagePositionPatient
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6 values)
    pixel_spacing: tuple[float, float] | None  # (row mm, col mm)
    instance_number: int | None
    header: pydicom.Dataset = field(repr=False)
    bits_allocated: int = 16
    slope: float | None = 1.0  # RescaleSlope, validated: finite, > 0; None when absent
    intercept: float | None = 0.0  # RescaleIntercept, validated: finite, bounded; None when absent
    slice_thickness: float | None = None
    notes: list[str] = field(default_factory=list)  # header values ignored, with why

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        row, col = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        return np.cross(row, col)


@dataclass
class SeriesInfo:
    """One series found by ``scan_series``: its files sorted by position, and what is wrong with it."""

    uid: str
    files: list[str]
    modality: str
    num_slices: int
    rows: int
    cols: int
    warnings: list[str] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list, repr=False)
    description: str = ""
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of the whole input

    @property
    def header(self) -> pydicom.Dataset:
        return self.instances[0].header


@dataclass
class ScanResult:
    """Every DICOM instance found, plus the files that were skipped and why."""

    instances: list[Instance]
    skipped_non_dicom: list[str]
    unreadable: list[tuple[str, str]]  # (path, reason)
    total_files: int


def list_files(path_or_files: "str | os.PathLike | Sequence[str | os.PathLike]") -> list[Path]:
    """All regular files under the given folder(s) (recursive, hidden ones skipped) and file(s)."""
    items = [path_or_files] if isinstance(path_or_files, (str, os.PathLike)) else list(path_or_files)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_file():
            files.append(item)
        elif item.is_dir():
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                files += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
        else:
            raise SeriesError(f"{item}: no such file or folder")
    return files


class _ToDebug(logging.Handler):
    """pydicom's decoder messages (tracebacks of handled errors included) as debug lines of ours."""

    def emit(self, record: logging.LogRecord) -> None:
        decoder_log.debug("pydicom: %s", record.getMessage())


decoder_log = logging.getLogger("PETriageLib.ingest.decoder")


@contextlib.contextmanager
def quiet_dicom():
    """Silence pydicom's warnings on invalid UIDs/VRs (real exports have them; we report them once)
    and send its log (which prints to stderr by default) to PETriage's logger at debug level."""
    settings = pydicom.config.settings
    mode = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom.config.IGNORE  # else pydicom also logs each one
    plog = logging.getLogger("pydicom")
    handlers, propagate = plog.handlers[:], plog.propagate
    plog.handlers, plog.propagate = [_ToDebug()], False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode = mode
        plog.handlers, plog.propagate = handlers, propagate


HEADER_DEFER_BYTES = 1 << 20  # elements larger than this (huge private tags) stay on disk until used


def read_instance(path: Path) -> Instance:
    """Read one header without pixel data; raises InvalidDicomError for non-DICOM files and
    SeriesError (naming the tag and value) for header values PETriage cannot use."""
    with quiet_dicom():  # values convert lazily: keep every access inside
        ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size=HEADER_DEFER_BYTES)
        return _instance(path, ds)


def _lenient(notes: list[str], read, *args, **kwargs):
    """A value PETriage can do without (InstanceNumber, SliceThickness): a note, not a refusal."""
    try:
        return read(*args, **kwargs)
    except SeriesError as exc:
        notes.append(f"{exc}; ignored")
        return None


def _instance(path: Path, ds: pydicom.Dataset) -> Instance:
    if "Rows" not in ds:
        meta = getattr(ds, "file_meta", None)
        classes = {header.text(ds, "SOPClassUID"), header.text(meta, "MediaStorageSOPClassUID") if meta else ""} - {""}
        if len(ds) == 0 or classes & IMAGE_SOP_CLASSES:  # pydicom stops quietly at the end of a short file
            raise ValueError("header ends before the image attributes (truncated file?)")
        if not classes or not all(is_valid_uid(c) for c in classes):  # nothing says what it is: damaged, not foreign
            raise ValueError("no valid SOP class and no image attributes after the DICOM preamble (corrupt file?)")
        raise InvalidDicomError("a DICOM file that is not an image (DICOMDIR, report, ...)")
    name = str(path)
    series_uid = header.text(ds, "SeriesInstanceUID")
    if not series_uid:
        series_uid = f"(no SeriesInstanceUID) {path.parent}"
    rows = header.integer(ds, "Rows", name, True, 1, MAX_IMAGE_SIDE)
    cols = header.integer(ds, "Columns", name, True, 1, MAX_IMAGE_SIDE)
    bits = header.integer(ds, "BitsAllocated", name, True, 1, 64)
    if bits not in BITS_ALLOCATED:
        raise SeriesError(f"{name}: BitsAllocated {bits} is not one of {list(BITS_ALLOCATED)}")
    spacing = header.numbers(ds, "PixelSpacing", name, 2)
    if spacing is not None and not all(0 < v <= MAX_PIXEL_MM for v in spacing):
        raise SeriesError(f"{name}: PixelSpacing {list(spacing)} is outside (0, {MAX_PIXEL_MM}] mm")
    notes: list[str] = []
    inum = _lenient(notes, header.integer, ds, "InstanceNumber", name)
    thickness = _lenient(notes, header.number, ds, "SliceThickness", name, low=0, high=1000, low_open=True)
    return Instance(
        path=name,
        series_uid=series_uid,
        sop_uid=header.text(ds, "SOPInstanceUID"),
        modality=header.text(ds, "Modality").upper(),
        sop_class=header.text(ds, "SOPClassUID"),
        rows=rows,
        cols=cols,
        frames=header.integer(ds, "NumberOfFrames", name, low=1) or 1,
        position=header.numbers(ds, "ImagePositionPatient", name, 3),  # type: ignore[arg-type]
        orientation=header.orientation(ds, name),
        pixel_spacing=spacing,  # type: ignore[arg-type]
        instance_number=inum,
        header=ds,
        bits_allocated=bits,
        slope=header.number(ds, "RescaleSlope", name, False, 0, MAX_RESCALE_SLOPE, low_open=True),
        intercept=header.number(ds, "RescaleIntercept", name, False, -MAX_ABS_INTERCEPT, MAX_ABS_INTERCEPT),
        slice_thickness=thickness,
        notes=notes,
    )


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def scan_files(path_or_files, progress: Progress | None = None) -> ScanResult:
    """Read the header of every file; non-DICOM files are counted, broken ones listed."""
    files = list_files(path_or_files)
    instances: list[Instance] = []
    skipped: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for n, path in enumerate(files, 1):
        try:
            instances.append(read_instance(path))
        except InvalidDicomError as exc:  # not DICOM, or DICOM that is not an image
            if _has_dicom_preamble(path) and "not an image" not in str(exc):  # looks like DICOM: damaged
                unreadable.append((str(path), f"truncated or corrupt: {exc}"))
            else:
                skipped.append(str(path))
        except SeriesError as exc:  # a header value PETriage cannot use: the message names it
            unreadable.append((str(path), str(exc).removeprefix(f"{path}: ")))
        except Exception as exc:  # truncated header, bad encoding, ...: name the file and go on
            unreadable.append((str(path), f"truncated or corrupt: {type(exc).__name__}: {exc}"))
        if progress:
            progress(n, len(files), "scanning")
    if skipped:
        log.info("skipped %d non-DICOM file(s)", len(skipped))
    return ScanResult(instances, skipped, unreadable, len(files))


def slice_position(inst: Instance, normal: np.ndarray) -> float:
    """Position of an instance along the slice normal (IPP projected on the normal)."""
    assert inst.position is not None
    return float(np.dot(inst.position, normal))


def group_series(instances: Iterable[Instance]) -> dict[str, list[Instance]]:
    groups: dict[str, list[Instance]] = {}
    for inst in instances:
        groups.setdefault(inst.series_uid, []).append(inst)
    return groups


def reference_normal(instances: Sequence[Instance]) -> np.ndarray | None:
    """The slice normal of the most common orientation in a series (None if no instance has one)."""
    with_normal = [i for i in instances if i.normal is not None]
    if not with_normal:
        return None
    rounded = [tuple(np.round(i.normal, 4)) for i in with_normal]
    common = max(set(rounded), key=rounded.count)
    return with_normal[rounded.index(common)].normal  # exact, not rounded: geometry must match ITK


def sort_instances(instances: Sequence[Instance]) -> list[Instance]:
    """Ascending position along the slice normal; InstanceNumber then file name only break ties
    and order instances that have no position (those are reported as errors elsewhere)."""
    normal = reference_normal(instances)

    def key(inst: Instance):
        pos = slice_position(inst, normal) if (normal is not None and inst.position is not None) else np.inf
        return (pos, inst.instance_number if inst.instance_number is not None else 0, inst.path)

    return sorted(instances, key=key)
