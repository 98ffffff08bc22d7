"""PNG previews of a phantom: chosen slices in lung and PE windows, and the finding masks."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from PETriageLib.preprocess.windows import get_window
from .findings import FINDING_CODES
from .study import Study

MASK_COLOURS = {  # RGBA per FINDING_CODES value
    "pe": (1.0, 0.1, 0.1, 0.9), "consolidation": (1.0, 0.6, 0.0, 0.7), "ggo": (1.0, 1.0, 0.2, 0.6),
    "nodule": (0.2, 0.9, 0.2, 0.8), "effusion": (0.2, 0.6, 1.0, 0.7), "emphysema": (0.8, 0.3, 1.0, 0.7),
}


def pick_slices(study: Study, n: int = 4) -> list[int]:
    """A PE slice (the one with most PE), an 'other' slice, then evenly spread slices."""
    chosen: list[int] = []
    pe_count = (study.masks == FINDING_CODES["pe"]).sum(axis=(1, 2))
    if pe_count.any():
        chosen.append(int(pe_count.argmax()))
    other = [k for k, lab in enumerate(study.slice_labels) if lab == "other"]
    if other:
        chosen.append(other[len(other) // 2])
    for f in np.linspace(0.2, 0.85, n):
        k = int(f * (study.volume.num_slices - 1))
        if len(chosen) < n and all(abs(k - c) > 3 for c in chosen):
            chosen.append(k)
    return sorted(chosen[:n])


def mask_rgba(mask2d: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*mask2d.shape, 4), np.float32)
    for name, code in FINDING_CODES.items():
        rgba[mask2d == code] = MASK_COLOURS[name]
    return rgba


def save_preview(study: Study, path: "str | Path", slices: Sequence[int] | None = None,
                 windows: Sequence[str] = ("lung", "pe"), dpi: int = 80) -> Path:
    """Rows: each window, then the masks over the last window; one column per slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = list(slices) if slices is not None else pick_slices(study)
    rows = len(windows) + 1
    fig, axes = plt.subplots(rows, len(ks), figsize=(3.2 * len(ks), 3.3 * rows), squeeze=False)
    hu = study.volume.hu
    for c, k in enumerate(ks):
        for r, name in enumerate(windows):
            w = get_window(name)
            axes[r, c].imshow(hu[k], cmap="gray", vmin=w.low, vmax=w.high, interpolation="nearest")
            axes[r, c].set_title(f"slice {k} ({study.slice_labels[k]}) {name} L{w.level:g}/W{w.width:g}",
                                 fontsize=7)
        w = get_window(windows[-1])
        axes[-1, c].imshow(hu[k], cmap="gray", vmin=w.low, vmax=w.high, interpolation="nearest")
        axes[-1, c].imshow(mask_rgba(study.masks[k]), interpolation="nearest")
        kinds = [n for n, code in FINDING_CODES.items() if (study.masks[k] == code).any()]
        axes[-1, c].set_title("masks: " + (", ".join(kinds) or "none"), fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
