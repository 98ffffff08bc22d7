"""Which slices deserve a Grad-CAM heatmap: Grad-CAM costs about one forward and backward pass
per slice, so it runs on the few slices that matter, not on the whole series."""
from __future__ import annotations

from typing import Sequence

from PETriageLib.triage.verdict import SliceRow
from PETriageLib.vocabulary import CAM_MODES


def select_cam_slices(rows: Sequence[SliceRow], mode: str = "top-k", top_k: int = 5) -> list[int]:
    """Slice indices that deserve a heatmap, in ascending index order.

    ``top-k``: the k analysed slices with the highest p_pe (slices without a stage 2
    probability rank after them by p_disease); ``pe``: every slice labelled pe; ``none``: none.
    """
    if mode == "none":
        return []
    if mode == "pe":
        return [r.index for r in rows if r.label == "pe"]
    if mode != "top-k":
        raise ValueError(f"unknown Grad-CAM mode {mode!r}; use one of {', '.join(CAM_MODES)}")
    cands = [r for r in rows if r.analysable]
    cands.sort(key=lambda r: (r.p_pe if r.p_pe is not None else -1.0, r.p_disease or 0.0), reverse=True)
    return sorted(r.index for r in cands[:max(0, int(top_k))])
