"""worklist.csv: a ranked worklist on disk, one row per series."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from PETriageLib.reporting.names import csv_value
from PETriageLib.triage.worklist import WorklistEntry

WORKLIST_COLUMNS = ["rank", "verdict", "pe_score", "patient_probability", "disease_score", "max_pe_slice",
                    "patient_id", "study_date",
                    "series_uid", "series_description", "num_slices", "reason", "report_dir",
                    "clot_volume_ml", "clot_slices"]


def write_worklist_csv(ranked: Sequence[WorklistEntry], path: str | Path) -> Path:
    """Write entries ranked by ``triage.worklist.rank_worklist``."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=WORKLIST_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for e in ranked:
            d = e.to_dict()
            w.writerow({c: csv_value(d.get(c)) for c in WORKLIST_COLUMNS})
    return Path(path)
