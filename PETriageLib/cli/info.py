"""`petriage info PATH`: the series found under a folder (or in files), with geometry, lung slice
range and warnings, as text or JSON. A tqdm progress bar shows on a terminal for large folders."""
from __future__ import annotations

import argparse
import logging
from typing import Any, Callable

import numpy as np

from PETriageLib.ingest.limits import AXIAL_COSINE
from PETriageLib.reporting.json_text import to_json

log = logging.getLogger("petriage.info")

AXES = ("sagittal", "coronal", "axial")  # slice normal along L, P, S


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="list the DICOM series in a folder (geometry, lungs, warnings)",
                              description="Scan a folder (recursively) or files for DICOM series and describe each: "
                                          "UID, slices, size, spacing, orientation, modality, lung slice range, warnings.")
    p.add_argument("path", nargs="+", help="a folder, or one or more DICOM files")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-lungs", action="store_true", help="headers only: skip decoding and lung finding (fast)")
    p.set_defaults(func=run)


def orientation_name(normal: "np.ndarray | None") -> str:
    """axial/coronal/sagittal when the slice normal is within ~10 degrees of an axis, else oblique."""
    if normal is None:
        return "unknown"
    n = np.abs(np.asarray(normal, float))
    axis = int(np.argmax(n))
    return AXES[axis] if n[axis] > AXIAL_COSINE else "oblique"


def _bar(desc: str, quiet: bool) -> tuple[Any, Callable[[int, int, str], None]]:
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="file", leave=False, disable=True if quiet else None)

    def update(done: int, total: int, _message: str = "") -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, update


def describe(info: Any, lungs: bool, quiet: bool) -> dict[str, Any]:
    """One series as a JSON-ready dict: header facts, then volume facts when it loads."""
    from PETriageLib.ingest.checks import check_series
    from PETriageLib.ingest.load import load_info
    from PETriageLib.errors import SeriesError
    from PETriageLib.preprocess.contrast_phase import measure_contrast_phase
    from PETriageLib.preprocess.lungs import analyse_lungs, lung_slice_range
    from PETriageLib.triage.eligibility import chest_problem, triage_problem

    check = check_series(info.instances)
    first = info.instances[0]
    row_mm, col_mm = first.pixel_spacing or (None, None)
    steps = np.diff(check.positions) if check.positions is not None else np.array([])
    out: dict[str, Any] = {
        "uid": info.uid, "modality": info.modality or None, "description": info.description,
        "num_slices": info.num_slices, "rows": info.rows, "cols": info.cols, "size": f"{info.cols}x{info.rows}",
        "spacing": [col_mm, row_mm, float(np.median(steps[steps > 0.01])) if (steps > 0.01).any() else None],
        "orientation": orientation_name(check.normal),
        "slice_normal": None if check.normal is None else [round(float(v), 6) for v in check.normal],
        "errors": check.errors, "warnings": [w for w in info.warnings if w not in check.errors],
        "loaded": False, "lung_slices": None, "lung_slice_count": None, "not_chest_reason": None,
        "gate_checked": False, "not_analysable_reason": None,  # the eligibility gate needs the decoded volume
        "contrast_phase": None,  # measured from the blood pool between the lungs, when there are lungs
    }
    if not lungs or check.errors:
        return out
    bar, update = _bar(f"decoding {info.uid[:24]}", quiet)
    try:
        volume = load_info(info, progress=update)
    except SeriesError as exc:
        out["errors"].append(str(exc))
        return out
    finally:
        bar.close()
    bar, update = _bar("finding lungs", quiet)
    found = analyse_lungs(volume, progress=update)
    bar.close()
    span = lung_slice_range(found)
    out.update(loaded=True, modality=volume.metadata.get("modality"),
               spacing=[round(float(s), 6) for s in volume.spacing], origin=list(volume.origin),
               warnings=volume.warnings, patient_id=volume.metadata.get("patient_id"),
               study_date=volume.metadata.get("study_date"), kernel=volume.metadata.get("kernel"),
               contrast_agent=volume.metadata.get("contrast_agent"),
               lung_slices=list(span) if span else None, lung_slice_count=sum(s.has_lung for s in found),
               not_chest_reason=chest_problem(volume, found), gate_checked=True,
               not_analysable_reason=triage_problem(volume, found))
    if span:
        phase = measure_contrast_phase(volume, found)
        out["contrast_phase"] = {"phase": phase.phase, "blood_hu": phase.blood_hu, "reason": phase.reason}
    return out


def _print_text(paths: list[str], series: list[dict[str, Any]]) -> None:
    print(f"{len(series)} series in {', '.join(paths)}")
    for n, s in enumerate(series, 1):
        sp = " x ".join("?" if v is None else f"{v:.3f}" for v in s["spacing"])
        print(f"\n[{n}] {s['uid']}  {s['modality'] or '?'}  {s['description']!r}")
        print(f"    {s['num_slices']} slices, {s['size']} px, spacing {sp} mm, {s['orientation']}")
        if s["loaded"]:
            lungs = (f"slices {s['lung_slices'][0]}-{s['lung_slices'][1]} ({s['lung_slice_count']} with lung)"
                     if s["lung_slices"] else "none found")
            print(f"    lungs: {lungs}; chest CT: {'no, ' + s['not_chest_reason'] if s['not_chest_reason'] else 'yes'}")
            if s["contrast_phase"]:
                print(f"    contrast phase: {s['contrast_phase']['phase']} ({s['contrast_phase']['reason']})")
            refused = s["not_analysable_reason"]
            print(f"    triage: {'refused, ' + refused if refused else 'accepted'}")
        for e in s["errors"]:
            print(f"    ERROR: {e}")
        for w in s["warnings"]:
            print(f"    warning: {w}")


def run(args: argparse.Namespace) -> int:
    """Exit code 0, or 2 when the paths hold no DICOM image at all."""
    from PETriageLib.errors import NoSeriesError
    from PETriageLib.ingest.load import scan_series

    quiet = bool(getattr(args, "quiet", False))
    source = args.path[0] if len(args.path) == 1 else args.path
    bar, update = _bar("scanning", quiet)
    try:
        infos = scan_series(source, progress=update)
    except NoSeriesError as exc:
        log.error("%s", exc)
        return 2
    finally:
        bar.close()
    series = [describe(info, not args.no_lungs, quiet) for info in infos]
    if args.json:
        print(to_json({"path": args.path, "series": series}, indent=2))
    else:
        _print_text(args.path, series)
    return 0
