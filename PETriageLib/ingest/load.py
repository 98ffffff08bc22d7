"""DICOM CT series -> CTVolume: scan, group, sort along the slice normal, check, decode, rescale to HU.

Public API: ``scan_series`` (what series a folder holds, headers only) and ``load_series`` (one
series as a ``CTVolume``). Geometry follows SimpleITK's ImageSeriesReader (LPS). Problems that
would give a wrong volume raise ``SeriesError`` naming the file; the rest become warnings.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from PETriageLib.ingest.checks import SeriesCheck, check_series
from PETriageLib.errors import NoSeriesError, SeriesError
from PETriageLib.ingest.scan import (HEADER_DEFER_BYTES, Instance, ScanResult, SeriesInfo, group_series, name_based_uid,
                                     quiet_dicom, scan_files, sort_instances)
from PETriageLib.progress import Progress
from PETriageLib.ingest.header import number as header_number, text as header_text
from PETriageLib.ingest.pixels import implausible_pixels
from PETriageLib.ingest.limits import MAX_CT_HU, MAX_VOXELS
from PETriageLib.ingest.volume import AIR_HU, CTVolume

log = logging.getLogger(__name__)

PathOrFiles = "str | os.PathLike | Sequence[str | os.PathLike]"

__all__ = ["SeriesInfo", "scan_series", "load_series", "load_info", "header_findings", "HeaderFindings"]


def _scan_summary(scan: ScanResult) -> list[str]:
    notes = []
    if scan.skipped_non_dicom:
        notes.append(f"skipped {len(scan.skipped_non_dicom)} non-DICOM (or non-image DICOM) file(s), e.g. {scan.skipped_non_dicom[0]}")
    for path, reason in scan.unreadable[:5]:
        notes.append(f"{path}: unreadable DICOM file: {reason}")
    if len(scan.unreadable) > 5:
        notes.append(f"{len(scan.unreadable) - 5} more unreadable file(s)")
    return notes


def _require_instances(path_or_files, scan: ScanResult) -> None:
    if scan.instances:
        return
    where = path_or_files if isinstance(path_or_files, (str, os.PathLike)) else f"{len(scan.skipped_non_dicom)} given files"
    if scan.total_files == 0:
        raise NoSeriesError(f"{where}: empty, no files found")
    detail = "; ".join(_scan_summary(scan))
    raise NoSeriesError(f"{where}: no readable DICOM image files among {scan.total_files} file(s) ({detail})")


def _info(uid: str, insts: list[Instance], check: SeriesCheck, scan_notes: list[str],
          unreadable: list[tuple[str, str]]) -> SeriesInfo:
    header = insts[0].header
    return SeriesInfo(
        uid=uid, files=[i.path for i in insts], modality=insts[0].modality or "",
        num_slices=len(insts), rows=insts[0].rows, cols=insts[0].cols,
        warnings=[*check.errors, *check.warnings, *scan_notes], instances=insts,
        description=header_text(header, "SeriesDescription"), unreadable=unreadable,
    )


def scan_series(path_or_files: PathOrFiles, progress: Progress | None = None) -> list[SeriesInfo]:
    """Group the DICOM files under a folder (or in a list) into series, largest first.

    Headers only (no pixel decoding). ``warnings`` of each series holds its errors and warnings;
    notes about skipped or unreadable files go to every series. ``progress(done, total, "scanning")`` per file.
    """
    scan = scan_files(path_or_files, progress)
    _require_instances(path_or_files, scan)
    notes = _scan_summary(scan)
    infos = []
    for uid, insts in group_series(scan.instances).items():
        insts = sort_instances(insts)
        infos.append(_info(uid, insts, check_series(insts), notes, scan.unreadable))
    return sorted(infos, key=lambda s: (-s.num_slices, s.uid))


def _choose(path_or_files, groups: dict[str, list[Instance]], series_uid: str | None) -> tuple[str, list[Instance]]:
    if series_uid is not None:
        if series_uid not in groups:
            raise SeriesError(f"{path_or_files}: series {series_uid} not found; found {', '.join(groups)}")
        return series_uid, groups[series_uid]
    if len(groups) > 1:
        listing = "; ".join(f"{uid} ({len(v)} files, {v[0].modality or '?'}, e.g. {v[0].path})" for uid, v in groups.items())
        raise SeriesError(f"{path_or_files}: {len(groups)} series mixed in one input, choose one with series_uid: {listing}")
    return next(iter(groups.items()))


def _rescale(inst: Instance) -> tuple[float, float]:
    """(slope, intercept), validated when the header was read; ``check_rescale`` refuses missing ones."""
    return float(inst.slope if inst.slope is not None else 1.0), float(inst.intercept or 0.0)


def _syntax_name(ds: "pydicom.Dataset | None") -> str:
    try:
        ts = pydicom.uid.UID(str(ds.file_meta.TransferSyntaxUID))
        return f"{ts.name} ({ts})"
    except Exception:  # no file meta, or a value that is not a UID
        return "unknown transfer syntax"


def _check_length(inst: Instance, ds: pydicom.Dataset) -> None:
    """Uncompressed pixel data must hold Rows x Columns x BitsAllocated before anything is allocated."""
    if "PixelData" not in ds:
        raise SeriesError(f"{inst.path}: no PixelData element")
    if getattr(ds.file_meta.TransferSyntaxUID, "is_compressed", True):
        return
    need = inst.rows * inst.cols * inst.frames * inst.bits_allocated // 8
    have = len(ds.PixelData)
    if have < need:
        raise SeriesError(f"{inst.path}: PixelData holds {have} bytes; Rows {inst.rows} x Columns {inst.cols} x "
                          f"BitsAllocated {inst.bits_allocated} need {need} (truncated file?)")


# pydicom's own RLE decoder raises on corrupt segments; pylibjpeg-rle's Rust code panics and
# prints a backtrace to stderr first (pydicom's: 17 ms per 512 x 512 slice here)
RLE_PLUGIN = "pydicom"


def _decode(inst: Instance) -> np.ndarray:
    """Stored pixel values of one file, decoded through pydicom's handlers (pylibjpeg, ...).
    Every decoder failure is this file's SeriesError: pylibjpeg-rle's Rust panics derive from
    BaseException, so only interrupts pass through."""
    ds = None
    try:
        with quiet_dicom():
            ds = pydicom.dcmread(inst.path, defer_size=HEADER_DEFER_BYTES)  # a huge private tag stays on disk
            _check_length(inst, ds)
            if ds.file_meta.get("TransferSyntaxUID") == pydicom.uid.RLELossless:
                ds.pixel_array_options(decoding_plugin=RLE_PLUGIN)
            arr = ds.pixel_array
    except SeriesError:
        raise
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as exc:  # noqa: B902 - see the docstring
        detail = " ".join(str(exc).split())[:300]
        raise SeriesError(f"{inst.path}: cannot decode pixel data ({_syntax_name(ds)}): {type(exc).__name__}: {detail}") from None
    if arr.shape != (inst.rows, inst.cols):
        raise SeriesError(f"{inst.path}: decoded pixel array has shape {arr.shape}, header says {(inst.rows, inst.cols)}")
    return arr


def _to_hu(inst: Instance, raw: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, float]:
    """Rescale to HU in float64 (an intercept of 1e10 cannot overflow); PixelPaddingValue and
    anything below air (e.g. -2048, -3024 padding) -> -1024. Also returns the share of pixels
    above what CT holds (``MAX_CT_HU``), for the pixel sanity check."""
    slope, intercept = _rescale(inst)
    hu = raw.astype(np.float64) * slope + intercept
    pad = _padding(inst)
    if pad is not None:
        hu[(raw >= pad[0]) & (raw <= pad[1])] = AIR_HU
    above = float(np.count_nonzero(hu > MAX_CT_HU)) / max(hu.size, 1)
    hi_clip = 32767 if dtype == np.int16 else np.finfo(np.float32).max
    return np.clip(hu, AIR_HU, hi_clip).astype(dtype), above


def _padding(inst: Instance) -> tuple[float, float] | None:
    """The stored-value range PixelPaddingValue (and PixelPaddingRangeLimit) marks, or None."""
    with quiet_dicom():
        try:
            pad = header_number(inst.header, "PixelPaddingValue", inst.path)
            limit = header_number(inst.header, "PixelPaddingRangeLimit", inst.path)
        except SeriesError as exc:
            log.debug("%s; padding ignored", exc)
            return None
    if pad is None:
        return None
    lo, hi = sorted((pad, pad if limit is None else limit))
    return lo, hi


def surrogate_instance_uid(series_key: str, name: str, position: float) -> str:
    """A valid, stable UID for a slice without SOPInstanceUID: same series, name and position -> same id.

    The library uses (SeriesInstanceUID, file name, slice position); the Slicer module uses the same
    function for volumes that did not come from DICOM, so reports and exports share one scheme.
    """
    return name_based_uid(f"{series_key}|{name}|{position:.3f}")


def series_metadata(inst: Instance, uid: str, num_slices: int) -> dict[str, Any]:
    """The identifiers and acquisition facts a report needs, from the first slice's header."""
    with quiet_dicom():
        return _metadata(inst, uid, num_slices)


def _metadata(inst: Instance, uid: str, num_slices: int) -> dict[str, Any]:
    h = inst.header
    meta_ds = getattr(h, "file_meta", None)
    ts = header_text(meta_ds, "TransferSyntaxUID") if meta_ds is not None else ""
    meta: dict[str, Any] = {
        key: header_text(h, kw) for key, kw in (
            ("patient_id", "PatientID"), ("patient_name", "PatientName"), ("study_uid", "StudyInstanceUID"),
            ("study_date", "StudyDate"), ("study_time", "StudyTime"), ("series_date", "SeriesDate"),
            ("series_description", "SeriesDescription"), ("study_description", "StudyDescription"),
            ("accession_number", "AccessionNumber"), ("manufacturer", "Manufacturer"),
            ("manufacturer_model", "ManufacturerModelName"), ("kernel", "ConvolutionKernel"),
            ("body_part", "BodyPartExamined"), ("patient_position", "PatientPosition"),
            ("image_type", "ImageType"), ("series_number", "SeriesNumber"))
    }
    agent = header_text(h, "ContrastBolusAgent")
    meta.update(
        series_uid=uid, modality=inst.modality or "CT", num_slices=num_slices,
        contrast_agent=agent or None,
        slice_thickness=inst.slice_thickness,
        rows=inst.rows, cols=inst.cols,
        transfer_syntax=ts or None,
        transfer_syntax_name=pydicom.uid.UID(ts).name if ts else None,
    )
    return meta


def _output_dtype(insts: list[Instance]) -> np.dtype:
    """int16 when every slice's rescale is an exact integer map, float32 otherwise."""
    for inst in insts:
        slope, intercept = _rescale(inst)
        if slope != 1.0 or intercept != int(intercept):
            return np.dtype(np.float32)
    return np.dtype(np.int16)


def _decode_all(insts: list[Instance], progress: Progress | None) -> tuple[np.ndarray, list[str]]:
    """The HU volume, and the defects of slices whose pixels CT cannot hold (flagged by name)."""
    dtype = _output_dtype(insts)
    voxels = len(insts) * insts[0].rows * insts[0].cols
    if voxels > MAX_VOXELS:
        raise SeriesError(f"{insts[0].path}: series of {len(insts)} x {insts[0].rows} x {insts[0].cols} voxels is "
                          f"larger than PETriage loads ({MAX_VOXELS})")
    hu = np.empty((len(insts), insts[0].rows, insts[0].cols), dtype=dtype)
    above = np.zeros(len(insts))
    for k, inst in enumerate(insts):
        hu[k], above[k] = _to_hu(inst, _decode(inst), dtype)
        if progress:
            progress(k + 1, len(insts), "reading")
    return hu, implausible_pixels(hu, [Path(i.path).name for i in insts], above)


def _drop_duplicates(insts: list[Instance], hu: np.ndarray, check: SeriesCheck) -> np.ndarray:
    """Keep one of each pair of slices at the same position when their pixels are identical."""
    keep = np.ones(len(insts), bool)
    for a, b in check.duplicates:
        if np.array_equal(hu[a], hu[b]):
            keep[b] = False
        else:
            raise SeriesError(f"{insts[a].path} and {insts[b].path} are at the same position "
                              f"(ImagePositionPatient {check.positions[a]:.2f} mm along the normal) with different pixels: two acquisitions mixed in one series")
    if not keep.all():
        check.warnings.append(f"dropped {int((~keep).sum())} duplicate slice(s) with identical pixels")
    same = [k for k in range(len(insts) - 1) if keep[k] and keep[k + 1] and np.array_equal(hu[k], hu[k + 1])]
    for k in same[:5]:
        check.warnings.append(f"{insts[k].path} and {insts[k + 1].path} have identical pixels at different "
                              f"positions ({check.positions[k]:.2f} and {check.positions[k + 1]:.2f} mm): "
                              "the same image stored twice?")
    return keep


def _slice_spacing(insts: list[Instance], positions: np.ndarray) -> float:
    steps = np.diff(positions)
    if steps.size:
        return float(np.median(steps))
    return insts[0].slice_thickness or 1.0


def load_series(path_or_files: PathOrFiles, series_uid: str | None = None,
                progress: Progress | None = None) -> CTVolume:
    """Load one CT series as a ``CTVolume`` (HU, LPS geometry equal to SimpleITK's, ids, metadata).

    ``path_or_files``: a folder (searched recursively), one file, or a list of files. With several
    series present, ``series_uid`` must choose one. ``progress(done, total, "reading")`` is called per
    decoded slice. Raises ``SeriesError`` with the file and the problem when no trustworthy volume
    can be built (not CT, missing positions, mixed sizes/orientations, undecodable pixels, ...).
    """
    scan = scan_files(path_or_files)
    _require_instances(path_or_files, scan)
    uid, insts = _choose(path_or_files, group_series(scan.instances), series_uid)
    return _load(uid, sort_instances(insts), _scan_summary(scan), progress, scan.unreadable)


def load_info(info: SeriesInfo, progress: Progress | None = None) -> CTVolume:
    """Load a series found by ``scan_series`` without reading its headers again."""
    notes = [w for w in info.warnings if "non-DICOM" in w or "unreadable DICOM file" in w]
    return _load(info.uid, info.instances, notes, progress, info.unreadable)


@dataclass(frozen=True)
class HeaderFindings:
    """What the headers alone say of a series, for front ends whose own reader decodes the pixels
    (Slicer's): the defects the gate refuses and the real slice positions."""

    defects: list[str]  # gantry tilt; unreadable DICOM-looking files of the input
    positions: list[float]  # mm along the slice normal, in slice order (empty without geometry)


def header_findings(info: SeriesInfo) -> HeaderFindings:
    check = check_series(info.instances)
    positions = check.positions if check.positions is not None else np.zeros(0)
    lost = _lost_slices(info.unreadable, info.num_slices, _slice_spacing(info.instances, positions))
    return HeaderFindings([*check.defects, *lost], [float(p) for p in positions])


def _lost_slices(unreadable: list[tuple[str, str]], kept: int, spacing: float) -> list[str]:
    """Files that look like DICOM but could not be read count against the series: it may have lost slices."""
    if not unreadable:
        return []
    path, reason = unreadable[0]
    return [f"{len(unreadable)} unreadable DICOM file(s) in the input (e.g. {path}: {reason}): the series may "
            f"have lost slices; {kept} slice(s) remain at {spacing:.2f} mm spacing"]


def _load(uid: str, insts: list[Instance], scan_notes: list[str], progress: Progress | None,
          unreadable: list[tuple[str, str]] = ()) -> CTVolume:
    check = check_series(insts)
    if check.errors:
        raise SeriesError("; ".join(check.errors))
    hu, pixel_defects = _decode_all(insts, progress)
    keep = _drop_duplicates(insts, hu, check)
    if not keep.all():
        hu = hu[keep]
    kept = [inst for inst, k in zip(insts, keep) if k]
    positions = check.positions[keep]
    first = kept[0]
    row_dir, col_dir = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
    row_mm, col_mm = first.pixel_spacing or (1.0, 1.0)
    slice_mm = _slice_spacing(kept, positions)
    lost = _lost_slices(list(unreadable), len(kept), slice_mm)
    defects = [*check.defects, *pixel_defects, *lost]  # check.defects are in check.warnings already
    volume = CTVolume(
        hu=hu,
        spacing=(float(col_mm), float(row_mm), slice_mm),
        origin=tuple(float(v) for v in first.position),
        direction=np.column_stack([row_dir, col_dir, check.normal]),
        z_positions=positions.astype(float),
        instance_uids=[i.sop_uid or surrogate_instance_uid(uid, Path(i.path).name, p)
                       for i, p in zip(kept, positions)],
        file_paths=[i.path for i in kept],
        metadata=series_metadata(first, uid, len(kept)),
        warnings=[*check.warnings, *pixel_defects, *lost, *scan_notes],
        defects=defects,
    )
    for w in volume.warnings:  # returned to the caller too; logged for the record
        log.info("%s", w)
    return volume
