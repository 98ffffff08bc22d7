"""slices.csv: one row per slice, in anatomical order."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from PETriageLib.reporting.names import csv_value
from PETriageLib.triage.verdict import SliceRow

SLICE_COLUMNS = ["index", "z", "instance_uid", "has_lung", "analysable", "p_disease", "p_pe", "label"]


def write_slices_csv(rows: Sequence[SliceRow], path: str | Path) -> Path:
    """One row per slice in anatomical order (ascending position along the slice normal)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SLICE_COLUMNS)
        for r in sorted(rows, key=lambda r: r.z):
            d = r.to_dict()
            w.writerow([csv_value(d[c]) for c in SLICE_COLUMNS])
    return Path(path)
