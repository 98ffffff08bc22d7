"""The realism report as Markdown tables (what `petriage phantom-realism` prints and writes)."""
from __future__ import annotations

import numpy as np

from .realism_run import SOURCES, RealismReport, SeriesRealism
from .tissue import TISSUES

LABELS = {"real": "real CT", "formula": "formula phantoms", "real_anatomy": "real-anatomy phantoms"}


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.0f}" if values else "n/a"


def _tissue_cell(series: list[SeriesRealism], tissue: str) -> str:
    """Mean over series of each series' HU mean, and of its SD: 'mean (sd)'."""
    stats = [s.tissues[tissue] for s in series if s.tissues.get(tissue)]
    if not stats:
        return "n/a"
    return f"{_mean([t.mean for t in stats])} ({_mean([t.sd for t in stats])})"


def tissue_table(report: RealismReport) -> str:
    head = "| tissue | " + " | ".join(LABELS[s] for s in SOURCES) + " |"
    lines = [head, "|---" * (len(SOURCES) + 1) + "|"]
    for tissue in TISSUES:
        lines.append(f"| {tissue} | " + " | ".join(_tissue_cell(report.of(s), tissue) for s in SOURCES) + " |")
    real = report.real_contrast_artery
    arteries = {s: [x.contrast_artery for x in report.of(s) if x.contrast_artery] for s in ("formula", "real_anatomy")}
    cells = [f"{real.mean:.0f} ({real.sd:.0f})" if real else "n/a"]
    cells += [f"{_mean([a.mean for a in arteries[s]])} ({_mean([a.sd for a in arteries[s]])})" if arteries[s] else "n/a"
              for s in ("formula", "real_anatomy")]
    lines.append("| contrast-filled pulmonary artery (CTPA) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def noise_table(report: RealismReport) -> str:
    lines = ["| series | set | slices x spacing (mm) | ROIs | noise SD (HU) | NPS mean frequency (1/mm) | NPS peak (1/mm) |",
             "|---|---|---|---|---|---|---|"]
    for s in report.series:
        spacing = f"{s.slices} x {s.spacing[0]:.2f}/{s.spacing[2]:.1f}"
        if s.noise is None:
            lines.append(f"| {s.name} | {LABELS[s.source]} | {spacing} | 0 | n/a | n/a | n/a |")
            continue
        n = s.noise
        lines.append(f"| {s.name} | {LABELS[s.source]} | {spacing} | {n.rois} | {n.noise_sd:.1f} | "
                     f"{n.mean_frequency:.3f} | {n.peak_frequency:.3f} |")
    return "\n".join(lines)


def two_sample_table(report: RealismReport) -> str:
    lines = ["| phantom set vs real CT | AUROC (out of fold) | per fold | slices real / phantom | patients real / phantom | leans most on (AUROC drop when permuted) |",
             "|---|---|---|---|---|---|"]
    for source, r in report.two_sample.items():
        folds = ", ".join(f"{a:.2f}" for a in r.fold_auroc)
        top = ", ".join(f"{name} {drop:.3f}" for name, drop in r.top_features[:3])
        lines.append(f"| {LABELS[source]} | {r.auroc:.3f} | {folds} | {r.real_slices} / {r.phantom_slices} | "
                     f"{r.real_patients} / {r.phantom_patients} | {top} |")
    return "\n".join(lines)


def realism_markdown(report: RealismReport) -> str:
    return "\n\n".join([
        "## HU per tissue: mean over series of the series mean (SD)", tissue_table(report),
        "## Noise power spectrum in uniform soft tissue", noise_table(report),
        "## Classifier two-sample test (0.5 = indistinguishable, 1.0 = told apart every time)", two_sample_table(report),
    ]) + "\n"
