"""Instances of a received series whose pixels cannot be decoded: one rule with `petriage triage`,
where files of a series that cannot be read count against it. A bad instance at a position that a
decoded one also holds cost nothing (a duplicate): the series is triaged with a warning. One
anywhere else is a lost slice, first and last included, and the series is not analysable."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from PETriageLib.errors import PETriageError
from PETriageLib.ingest.limits import DUPLICATE_MM
from PETriageLib.ingest.scan import read_instance, slice_position
from PETriageLib.ingest.volume import CTVolume


def _position(path: str, normal: np.ndarray) -> float | None:
    try:
        inst = read_instance(Path(path))
    except (PETriageError, OSError, ValueError):
        return None  # header unreadable as well: where it was cannot be known
    return None if inst.position is None else slice_position(inst, normal)


def account_for_skipped(volume: CTVolume, skipped: list[tuple[str, str]]) -> None:
    """Add to ``volume`` a defect for lost slices, or a warning for lost duplicates.

    ``skipped``: (path, reason) of the series' instances that were received but not decoded."""
    if not skipped:
        return
    normal = np.asarray(volume.direction, float)[:, 2]
    kept = np.asarray(volume.z_positions, float)
    lost = [(p, why) for p, why in skipped
            if (z := _position(p, normal)) is None or np.min(np.abs(kept - z)) >= DUPLICATE_MM]
    if lost:
        path, why = lost[0]
        defect = (f"{len(lost)} instance(s) of the series could not be decoded (e.g. {Path(path).name}: {why}): "
                  f"the series lost slices; {volume.num_slices} slice(s) remain")
        volume.defects.append(defect)
        volume.warnings.append(defect)
    else:
        path, why = skipped[0]
        volume.warnings.append(f"{len(skipped)} instance(s) left out (e.g. {Path(path).name}: {why}); a decoded "
                               "instance holds the same slice position, so no slice is missing")
