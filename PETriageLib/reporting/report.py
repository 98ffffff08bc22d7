"""A triage result as files: report.json, slices.csv, heatmap volumes, key images, summary.md.

The result is read, never changed: the report's timings are the result's plus Grad-CAM's and the
writing's own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from PETriageLib.explain.heatmaps import Heatmaps
from PETriageLib.reporting.embolus_files import write_embolus_files
from PETriageLib.reporting.heatmap_files import write_heatmaps
from PETriageLib.reporting.json_text import to_json
from PETriageLib.reporting.key_images import write_key_images
from PETriageLib.reporting.slices_csv import write_slices_csv
from PETriageLib.reporting.summary import summary_markdown
from PETriageLib.triage.result import TriageResult


@dataclass
class ReportFiles:
    """The files one report folder holds."""

    folder: Path
    slices_csv: Path
    summary: Path
    report_json: Path
    heatmaps: list[Path] = field(default_factory=list)
    embolus: list[Path] = field(default_factory=list)  # probability and mask, when segmentation ran
    key_images: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # the report's: the result's, Grad-CAM, writing

    def names(self) -> dict[str, "str | list[str]"]:
        """report.json's ``files`` entry: each kind's file name(s)."""
        out: dict[str, "str | list[str]"] = {"slices_csv": self.slices_csv.name}
        if self.heatmaps:
            out["heatmaps"] = [p.name for p in self.heatmaps]
        if self.embolus:
            out["embolus"] = [p.name for p in self.embolus]
        if self.key_images:
            out["key_images"] = [p.name for p in self.key_images]
        out.update(summary=self.summary.name, report_json=self.report_json.name)
        return out


def write_report(result: TriageResult, out_dir: str | Path, heatmaps: Heatmaps | None = None,
                 nifti: bool = False, key_images: bool = True) -> ReportFiles:
    """Write every report file into ``out_dir``."""
    t = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out, write_slices_csv(result.rows, out / "slices.csv"), out / "summary.md",
                        out / "report.json")
    timings = dict(result.timings)
    if heatmaps is not None and heatmaps.volumes:
        timings["gradcam"] = heatmaps.seconds
        files.heatmaps = write_heatmaps(heatmaps.volumes, result.volume, out, nifti=nifti)
        if key_images and heatmaps.slices:
            files.key_images = write_key_images(result, heatmaps, out)
    if result.embolus is not None:
        files.embolus = write_embolus_files(result.embolus, result.volume, out, nifti=nifti)
    timings["writing"] = time.perf_counter() - t
    files.timings = timings
    names = files.names()
    files.summary.write_text(summary_markdown(result, [n for v in names.values() for n in
                                                      (v if isinstance(v, list) else [v])], timings))
    data = result.to_dict()
    data["timings_s"] = {k: round(v, 4) for k, v in timings.items()}
    if result.embolus is not None:
        data["embolus"] = result.embolus.to_dict(nifti)
    domain = data.pop("domain_check")
    slices = data.pop("slices")
    data.update(domain_check=domain, gradcam={} if heatmaps is None else heatmaps.info(), slices=slices, files=names)
    files.report_json.write_text(to_json(data))
    return files
