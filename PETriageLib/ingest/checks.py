"""Checks on one sorted series: what makes it unloadable (errors) and what the user must know (warnings).

Every message names a file (or the series) and the problem, so a user can find and fix it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from PETriageLib.ingest.limits import DUPLICATE_MM, MAX_TILT_DEGREES, is_axial, spacing_gaps
from PETriageLib.ingest.scan import CT_SOP_CLASSES, SECONDARY_CAPTURE_PREFIX, Instance, is_valid_uid, reference_normal


@dataclass
class SeriesCheck:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)  # loads, but must never get a verdict (the gate refuses)
    normal: np.ndarray | None = None
    positions: np.ndarray | None = None  # along the normal, same order as the instances
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # index pairs with equal position


def _name(inst: Instance) -> str:
    return Path(inst.path).name


def examples(insts: list[Instance], n: int = 3) -> str:
    names = ", ".join(inst.path for inst in insts[:n])
    return names + (f" and {len(insts) - n} more" if len(insts) > n else "")


def check_modality(insts: list[Instance], check: SeriesCheck) -> None:
    first = insts[0]
    modalities = sorted({i.modality for i in insts})
    if any(i.sop_class.startswith(SECONDARY_CAPTURE_PREFIX) for i in insts):
        check.errors.append(f"{first.path}: secondary-capture image (a screenshot, not a CT acquisition); PETriage needs CT")
    elif modalities == [""]:
        if first.sop_class in CT_SOP_CLASSES:
            check.warnings.append(f"{first.path}: no Modality tag; CT assumed from the SOP class (CT Image Storage)")
        else:
            check.errors.append(f"{first.path}: no Modality tag and SOP class {first.sop_class or 'missing'} is not CT")
    elif modalities != ["CT"]:
        check.errors.append(f"{first.path}: modality {'/'.join(m or '?' for m in modalities)}, not CT; PETriage needs CT")
    multi = [i for i in insts if i.frames > 1]
    if multi:
        check.errors.append(f"{multi[0].path}: multi-frame image ({multi[0].frames} frames) is not supported; export single-frame slices")


def check_geometry(insts: list[Instance], check: SeriesCheck) -> None:
    """Presence and consistency of position, orientation, size; then duplicates and gaps."""
    no_pos = [i for i in insts if i.position is None]
    no_ori = [i for i in insts if i.orientation is None]
    if no_pos:
        check.errors.append(f"missing ImagePositionPatient in {len(no_pos)} file(s): {examples(no_pos)}; "
                            "slices cannot be placed or ordered")
    if no_ori:
        check.errors.append(f"missing ImageOrientationPatient in {len(no_ori)} file(s): {examples(no_ori)}")
    sizes = {(i.rows, i.cols) for i in insts}
    if len(sizes) > 1:
        check.errors.append(f"mixed image sizes {sorted(sizes)} in series of {insts[0].path}; cannot stack slices")
    if no_pos or no_ori:
        return
    normal = reference_normal(insts)
    check.normal = normal
    odd = [i for i in insts if not np.allclose(i.normal, normal, atol=1e-3)]
    if odd:
        check.errors.append(f"mixed orientations: {len(odd)} of {len(insts)} file(s) differ from the rest, "
                            f"e.g. {odd[0].path}; cannot stack slices")
        return
    spacings = {tuple(np.round(i.pixel_spacing, 5)) for i in insts if i.pixel_spacing}
    if len(spacings) > 1:
        check.errors.append(f"mixed PixelSpacing {sorted(spacings)} in series of {insts[0].path}")
    if any(i.pixel_spacing is None for i in insts):
        check.warnings.append(f"{insts[0].path}: no PixelSpacing; 1 mm assumed (measurements will be wrong)")
    pos = np.array([float(np.dot(i.position, normal)) for i in insts])
    check.positions = pos
    if len(insts) == 1:
        check.warnings.append(f"{insts[0].path}: a single slice, not a volume (slice spacing taken from SliceThickness)")
        return
    steps = np.diff(pos)
    dup = np.flatnonzero(steps < DUPLICATE_MM)
    check.duplicates = [(int(k), int(k) + 1) for k in dup]
    for k in dup[:5]:
        check.warnings.append(f"duplicate slice position {pos[k]:.2f} mm: {_name(insts[k])} and {_name(insts[k + 1])}")
    if len(dup) > 5:
        check.warnings.append(f"{len(dup) - 5} more duplicate slice positions")
    real = steps[steps >= DUPLICATE_MM]
    if real.size:
        median, gaps = spacing_gaps(pos)
        for k in gaps[:5]:
            check.warnings.append(f"missing slices: gap of {steps[k]:.2f} mm (median {median:.2f} mm) between "
                                  f"{_name(insts[k])} at {pos[k]:.2f} mm and {_name(insts[k + 1])} at {pos[k + 1]:.2f} mm")
        if len(gaps) > 5:
            check.warnings.append(f"{len(gaps) - 5} more gaps in slice positions")
        if real.size > 1 and float(np.ptp(real)) > 0.01 * median and not len(gaps):
            check.warnings.append(f"uneven slice spacing ({real.min():.3f} to {real.max():.3f} mm); the median is used")
    if not is_axial(normal):
        check.warnings.append(f"not an axial series (slice normal {np.round(normal, 3).tolist()} in LPS); "
                              "it loads, but triage needs axial slices")


def check_rescale(insts: list[Instance], check: SeriesCheck) -> None:
    """HU need RescaleSlope and RescaleIntercept (type 1 in CT Image Storage): never guess them."""
    for keyword, attr in (("RescaleSlope", "slope"), ("RescaleIntercept", "intercept")):
        missing = [i for i in insts if getattr(i, attr) is None]
        if missing:
            check.errors.append(f"{keyword} missing in {len(missing)} file(s): {examples(missing)}; "
                                "Hounsfield units cannot be computed")
        values = sorted({getattr(i, attr) for i in insts} - {None})
        if len(values) > 1:  # scanners keep one rescale per series; a slice with another is suspect
            odd = [i for i in insts if getattr(i, attr) != getattr(insts[len(insts) // 2], attr)]
            check.warnings.append(f"mixed {keyword} values {values[:4]} in the series, e.g. {examples(odd, 2)}")


def check_tilt(insts: list[Instance], check: SeriesCheck) -> None:
    """Slice positions must advance along the slice normal; off it (gantry tilt) the volume is sheared."""
    first, last = np.asarray(insts[0].position, float), np.asarray(insts[-1].position, float)
    along = float(np.dot(last - first, check.normal))
    across = float(np.linalg.norm((last - first) - along * check.normal))
    if abs(along) < DUPLICATE_MM:
        return
    degrees = float(np.degrees(np.arctan2(across, abs(along))))
    if degrees > MAX_TILT_DEGREES:
        check.defects.append(f"gantry tilt of {degrees:.1f} degrees: ImagePositionPatient from {_name(insts[0])} to "
                             f"{_name(insts[-1])} does not advance along the slice normal, the volume would be "
                             "sheared; PETriage does not resample tilted series")


def check_notes(insts: list[Instance], check: SeriesCheck) -> None:
    notes = [n for i in insts for n in i.notes]
    check.warnings += notes[:5]
    if len(notes) > 5:
        check.warnings.append(f"{len(notes) - 5} more header values ignored")


def check_uids(insts: list[Instance], check: SeriesCheck) -> None:
    uid = insts[0].series_uid
    if uid.startswith("(no SeriesInstanceUID)"):
        check.warnings.append(f"{insts[0].path}: no SeriesInstanceUID; files grouped by folder")
    elif not is_valid_uid(uid):
        check.warnings.append(f"SeriesInstanceUID {uid!r} is not a valid DICOM UID (kept as given)")
    empty = sum(1 for i in insts if not i.sop_uid)
    if empty:
        check.warnings.append(f"{empty} file(s) have no SOPInstanceUID (e.g. {insts[0].path}); "
                              "stable surrogate ids (2.25.<hash of series, file name, position>) are used")


def check_series(insts: list[Instance]) -> SeriesCheck:
    """Run every check on instances already sorted by ``dicom_scan.sort_instances``."""
    check = SeriesCheck()
    check_modality(insts, check)
    check_rescale(insts, check)
    check_geometry(insts, check)
    if check.positions is not None and len(insts) > 1:
        check_tilt(insts, check)
    check_uids(insts, check)
    check_notes(insts, check)
    check.warnings += check.defects
    return check
