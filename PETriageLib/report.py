"""Triage reports on disk: report.json, slices.csv, heatmap volumes, key images, summary.md,
and the worklist CSV that ranks many series by PE score.

Heatmap volumes are written with SimpleITK in the input series' exact geometry (spacing,
origin, direction in LPS), so any viewer overlays them on the CT without resampling.
"""
from __future__ import annotations

import csv
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from PETriageLib.cascade import TriageResult
from PETriageLib.nrrd_stream import write_nrrd_streamed
from PETriageLib.verdict import SliceRow
from PETriageLib.volume import CTVolume
from PETriageLib.windows import PRESETS, get_window

log = logging.getLogger(__name__)

SLICE_COLUMNS = ["index", "z", "instance_uid", "has_lung", "analysable", "p_disease", "p_pe", "label"]
WORKLIST_COLUMNS = ["rank", "verdict", "pe_score", "patient_probability", "disease_score", "max_pe_slice",
                    "patient_id", "study_date",
                    "series_uid", "series_description", "num_slices", "reason", "report_dir"]
MAX_KEY_IMAGES = 10


def _check_shape(array: np.ndarray, volume: CTVolume) -> None:
    if tuple(array.shape) != tuple(volume.shape):
        raise ValueError(f"heatmap shape {array.shape} differs from the series shape {volume.shape}")


def heatmap_image(array: np.ndarray, volume: CTVolume) -> "Any":
    """A SimpleITK image of ``array`` (k, j, i) carrying the volume's geometry."""
    import SimpleITK as sitk

    _check_shape(array, volume)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    img.SetSpacing([float(x) for x in volume.spacing])
    img.SetOrigin([float(x) for x in volume.origin])
    # SimpleITK's direction is the row-major 3x3 matrix whose columns are the i, j, k axes.
    img.SetDirection([float(x) for x in np.asarray(volume.direction, float).reshape(9)])
    return img


def write_heatmaps(heatmaps: Mapping[str, np.ndarray], volume: CTVolume, out_dir: str | Path,
                   nifti: bool = False) -> list[Path]:
    """heatmap_<branch>.nrrd (or .nii.gz) per branch, gzip-compressed."""
    import SimpleITK as sitk

    paths = []
    for branch, array in heatmaps.items():
        path = Path(out_dir) / f"heatmap_{safe_name(branch)}{'.nii.gz' if nifti else '.nrrd'}"
        if nifti:
            sitk.WriteImage(heatmap_image(array, volume), str(path), useCompression=True)
        else:  # streamed: no full-volume copies (see nrrd_stream)
            _check_shape(array, volume)
            write_nrrd_streamed(path, array, volume.spacing, volume.origin, volume.direction)
        paths.append(path)
    return paths


def safe_name(text: str, max_len: int = 60) -> str:
    """A file-name-safe version of ``text`` (letters, digits, - and _)."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_")
    return s[:max_len] or "unnamed"


def _fmt(x: Any) -> Any:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.6f}"
    return x


def write_slices_csv(rows: Sequence[SliceRow], path: str | Path) -> Path:
    """One row per slice in anatomical order (ascending position along the slice normal)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SLICE_COLUMNS)
        for r in sorted(rows, key=lambda r: r.z):
            d = r.to_dict()
            w.writerow([_fmt(d[c]) for c in SLICE_COLUMNS])
    return Path(path)


def _window_for(branch: str, meta_windows: Sequence[Any]) -> list[Any]:
    """Display windows of a branch: its own window, or vascular + lung for a single network."""
    for w in meta_windows:
        win = get_window(w)
        if win.name == branch:
            return [win]
    return [PRESETS["vascular"], PRESETS["lung"]]


def write_key_images(result: TriageResult, heatmaps: Mapping[str, np.ndarray], slices: Sequence[int],
                     out_dir: str | Path, meta_windows: Sequence[Any] = ("vascular", "lung")) -> list[Path]:
    """PNG per key slice: the slice in each branch's window with that branch's heatmap over it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = {r.index: r for r in result.rows}
    ranked = sorted(slices, key=lambda k: -(rows[k].p_pe or 0.0))[:MAX_KEY_IMAGES]
    panels = [(b, w) for b in heatmaps for w in _window_for(b, meta_windows)] or \
             [(None, PRESETS["vascular"]), (None, PRESETS["lung"])]
    paths = []
    for rank, k in enumerate(ranked, 1):
        r = rows[k]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
        for ax, (branch, win) in zip(axes[0], panels):
            ax.imshow(win.apply(result.volume.hu[k]), cmap="gray", vmin=-1, vmax=1)
            if branch is not None:
                heat = heatmaps[branch][k]
                ax.imshow(np.ma.masked_less(heat, 0.05), cmap="jet", alpha=0.4, vmin=0, vmax=1)
            ax.set_title(f"{win.name} window" + (f" / {branch} Grad-CAM" if branch else ""), fontsize=9)
            ax.axis("off")
        p_dis, p_pe = ("n/a" if p is None else f"{p:.3f}" for p in (r.p_disease, r.p_pe))
        fig.suptitle(f"slice {k} (z {r.z:.1f} mm): {r.label or 'not analysed'}, p_disease {p_dis}, p_pe {p_pe}",
                     fontsize=10)
        fig.tight_layout()
        path = Path(out_dir) / f"key_{rank:02d}_slice{k:04d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def _ranges_text(ranges: Sequence[Sequence[int]], rows: Sequence[SliceRow]) -> str:
    if not ranges:
        return "none"
    return ", ".join(f"{a}-{b} (z {rows[a].z:.1f} to {rows[b].z:.1f} mm)" for a, b in ranges)


def _domain_text(result: TriageResult) -> str:
    domain, stage1 = result.domain, result.models[0] if result.models else {}
    if domain is None:
        if result.options.get("domain_check") == "off":
            why = "off"
        elif stage1.get("domain_threshold") is None:
            why = "the stage 1 checkpoint has no feature statistics (petriage fit-domain)"
        else:
            why = "no slice was analysed"
        return f"Domain check: not run ({why})"
    verdict = "like the training data" if domain["in_domain"] else "UNLIKE the training data"
    return (f"Domain check: {verdict} (feature distance {domain['score']:.0f}, limit {domain['threshold']:.0f}, "
            f"{domain['slices']} slices)")


def summary_markdown(result: TriageResult, files: Mapping[str, Any]) -> str:
    v, s = result.verdict, result.series_info()
    lines = [
        f"# PETriage: {v.verdict.replace('_', ' ')}",
        "",
        f"- Reason: {v.reason}",
        f"- Series: {s.get('series_description') or ''} (patient {s.get('patient_id') or '?'}, "
        f"study date {s.get('study_date') or '?'}), {result.volume.num_slices} slices",
        f"- Rule: {v.rule}; thresholds p_disease >= {v.threshold_disease:g}, p_pe >= {v.threshold_pe:g}",
    ]
    if v.verdict != "not_analysable":
        top = "none" if v.max_pe_slice is None else \
            f"slice {v.max_pe_slice} (z {result.rows[v.max_pe_slice].z:.1f} mm)"
        lines += [
            f"- PE score {v.pe_score:.3f}, disease score {v.disease_score:.3f}; highest p_pe at {top}",
            *([f"- Patient classifier p(PE) {v.patient_probability:.3f} (threshold {v.patient_threshold:.3f})"]
              if v.patient_probability is not None else []),
            f"- PE slices: {_ranges_text(v.pe_ranges, result.rows)}",
            f"- Diseased slices: {_ranges_text(v.disease_ranges, result.rows)}",
            f"- Slice counts: {', '.join(f'{k} {n}' for k, n in v.counts.items())}",
        ]
    lines += ["", "## Models", ""]
    lines += [f"- stage {m['stage']}: {m['name']} ({m.get('architecture')}), sha256 {m.get('sha256')}"
              for m in result.models]
    lines += [f"- {_domain_text(result)}"]
    lines += ["", "## Timings (s)", "", ", ".join(f"{k} {t:.2f}" for k, t in result.timings.items())]
    lines += ["", "## Files", ""] + [f"- {Path(p).name}" for group in files.values()
                                     for p in (group if isinstance(group, list) else [group])]
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result.warnings]
    lines += ["", "Research software: not a medical device; every result needs a radiologist's review."]
    return "\n".join(lines) + "\n"


def write_report(result: TriageResult, out_dir: str | Path, heatmaps: Mapping[str, np.ndarray] | None = None,
                 nifti: bool = False, key_images: bool = True) -> dict[str, Any]:
    """Write every report file into ``out_dir``; returns {kind: path or list of paths}."""
    t = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"slices_csv": write_slices_csv(result.rows, out / "slices.csv")}
    heatmaps = heatmaps or {}
    if heatmaps:
        files["heatmaps"] = write_heatmaps(heatmaps, result.volume, out, nifti=nifti)
    if key_images and heatmaps and result.cam.get("slices"):
        meta_windows = next((m["windows"] for m in result.models if m["stage"] == result.cam.get("stage")), None)
        files["key_images"] = write_key_images(result, heatmaps, result.cam["slices"], out,
                                               meta_windows or ("vascular", "lung"))
    files["summary"] = out / "summary.md"
    files["report_json"] = out / "report.json"
    result.timings["writing"] = time.perf_counter() - t
    files["summary"].write_text(summary_markdown(result, files))
    data = result.to_dict()
    data["files"] = {k: ([p.name for p in v] if isinstance(v, list) else Path(v).name) for k, v in files.items()}
    files["report_json"].write_text(json.dumps(data, indent=1, default=str))
    return files


def worklist_row(result: TriageResult | None, report_dir: str | Path, series: Mapping[str, Any] | None = None,
                 verdict: str = "error", reason: str | None = None) -> dict[str, Any]:
    """One worklist entry: from a triage result, or from series info plus why it was not triaged."""
    if result is None:
        s = dict(series or {})
        scores = {"pe_score": None, "patient_probability": None, "disease_score": None, "max_pe_slice": None}
        num_slices = s.get("num_slices")
    else:
        v, s = result.verdict, result.series_info()
        verdict, reason, num_slices = v.verdict, v.reason, result.volume.num_slices
        scores = {"pe_score": v.pe_score, "patient_probability": v.patient_probability,
                  "disease_score": v.disease_score, "max_pe_slice": v.max_pe_slice}
    keys = ("patient_id", "study_date", "series_uid", "series_description")
    return {"verdict": verdict, **scores, **{k: s.get(k) for k in keys}, "num_slices": num_slices,
            "reason": reason, "report_dir": str(report_dir)}


def write_worklist(entries: Sequence[Mapping[str, Any]], path: str | Path) -> list[dict[str, Any]]:
    """Rank by the patient classifier's p(PE) where it ran, else by PE score (highest first);
    unanalysable series and errors go last, for a human to see."""
    def key(e: Mapping[str, Any]) -> tuple:
        scored = e.get("pe_score") is not None
        first = e.get("patient_probability")
        first = e.get("pe_score") if first is None else first
        return (0 if scored else 1, -(first or 0.0), -(e.get("disease_score") or 0.0))

    ranked = [dict(e, rank=i) for i, e in enumerate(sorted(entries, key=key), 1)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=WORKLIST_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for e in ranked:
            w.writerow({c: _fmt(e.get(c)) for c in WORKLIST_COLUMNS})
    return ranked
