"""Key images: the slices Grad-CAM ran on, each branch's window with that branch's heatmap over it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from PETriageLib.explain.heatmaps import Heatmaps
from PETriageLib.preprocess.windows import PRESETS, get_window
from PETriageLib.triage.result import TriageResult

MAX_KEY_IMAGES = 10


def _window_for(branch: str, meta_windows: Sequence[Any]) -> list[Any]:
    """Display windows of a branch: its own window, or vascular + lung for a single network."""
    for w in meta_windows:
        win = get_window(w)
        if win.name == branch:
            return [win]
    return [PRESETS["vascular"], PRESETS["lung"]]


def write_key_images(result: TriageResult, heatmaps: Heatmaps, out_dir: str | Path) -> list[Path]:
    """PNG per key slice (the highest p_pe first, at most MAX_KEY_IMAGES).

    Figures are made with matplotlib's object API on an Agg canvas, not pyplot: no global figure
    state, so the screening loop may write a report in a background thread.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    maps, meta_windows = heatmaps.volumes, heatmaps.windows or ("vascular", "lung")
    rows = {r.index: r for r in result.rows}
    ranked = sorted(heatmaps.slices, key=lambda k: -(rows[k].p_pe or 0.0))[:MAX_KEY_IMAGES]
    panels = [(b, w) for b in maps for w in _window_for(b, meta_windows)] or \
             [(None, PRESETS["vascular"]), (None, PRESETS["lung"])]
    paths = []
    for rank, k in enumerate(ranked, 1):
        r = rows[k]
        fig = Figure(figsize=(4.2 * len(panels), 4.6))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(panels), squeeze=False)
        for ax, (branch, win) in zip(axes[0], panels):
            ax.imshow(win.apply(result.volume.hu[k]), cmap="gray", vmin=-1, vmax=1)
            if branch is not None:
                ax.imshow(np.ma.masked_less(maps[branch][k], 0.05), cmap="jet", alpha=0.4, vmin=0, vmax=1)
            ax.set_title(f"{win.name} window" + (f" / {branch} Grad-CAM" if branch else ""), fontsize=9)
            ax.axis("off")
        p_dis, p_pe = ("n/a" if p is None else f"{p:.3f}" for p in (r.p_disease, r.p_pe))
        fig.suptitle(f"slice {k} (z {r.z:.1f} mm): {r.label or 'not analysed'}, p_disease {p_dis}, p_pe {p_pe}",
                     fontsize=10)
        fig.tight_layout()
        path = Path(out_dir) / f"key_{rank:02d}_slice{k:04d}.png"
        fig.savefig(path, dpi=80)
        paths.append(path)
    return paths
