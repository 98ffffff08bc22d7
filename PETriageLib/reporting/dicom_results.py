"""Every DICOM object of one triaged series, written into a folder: the SR, the key images and the
heatmap maps (none for a series the gate refused: it has no verdict)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PETriageLib.atomic import atomic_write
from PETriageLib.explain.heatmaps import Heatmaps
from PETriageLib.reporting.dicom_heatmap import build_parametric_maps
from PETriageLib.reporting.dicom_key_images import build_key_images
from PETriageLib.reporting.dicom_seg import build_embolus_seg
from PETriageLib.reporting.dicom_source import read_source
from PETriageLib.reporting.dicom_sr import build_sr
from PETriageLib.triage.result import TriageResult

log = logging.getLogger(__name__)


@dataclass
class DicomResults:
    sr: Path | None = None
    key_images: list[Path] = field(default_factory=list)
    heatmaps: list[Path] = field(default_factory=list)
    seg: Path | None = None  # the embolus mask as DICOM SEG, when segmentation ran

    @property
    def files(self) -> list[Path]:
        return ([self.sr] if self.sr else []) + self.key_images + self.heatmaps + ([self.seg] if self.seg else [])


def write_dicom_results(result: TriageResult, heatmaps: Heatmaps | None, out_dir: "str | Path") -> DicomResults:
    """Write the series' DICOM objects into ``out_dir`` (sr.dcm, key_NN.dcm, heatmap_BRANCH.dcm, and
    embolus_seg.dcm when embolus segmentation ran)."""
    out = DicomResults()
    if result.verdict.verdict == "not_analysable":
        log.info("no DICOM results for a series without a verdict: %s", result.verdict.reason)
        return out
    source = read_source(result.volume)
    out_dir = Path(out_dir)

    def save(ds, name: str) -> Path:
        return atomic_write(out_dir / name, lambda tmp: ds.save_as(tmp, enforce_file_format=True))

    out.sr = save(build_sr(result, source), "sr.dcm")
    if heatmaps is not None and heatmaps.volumes:
        out.key_images = [save(im, f"key_{n:02d}.dcm")
                          for n, im in enumerate(build_key_images(result, heatmaps, source), 1)]
        out.heatmaps = [save(pm, f"heatmap_{branch}.dcm")
                        for branch, pm in zip(heatmaps.volumes, build_parametric_maps(heatmaps, source))]
    if result.embolus is not None:
        out.seg = save(build_embolus_seg(result, source), "embolus_seg.dcm")
    return out
