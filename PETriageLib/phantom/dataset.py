"""generate_dataset: many phantom studies plus a manifest.csv for training and evaluation."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from .study import generate_study
from .writer import write_study

log = logging.getLogger(__name__)

def write_manifest(out: Path, rows: list[dict]) -> Path:
    """OUT/manifest.csv with one row per generated patient."""
    manifest = Path(out) / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return manifest


MANIFEST_COLUMNS = ["patient_id", "series_dir", "labels_csv", "mask", "patient_label", "contrast", "findings", "seed"]
NONCONTRAST_FRACTION = 0.15  # of the non-PE studies in a "mixed" dataset


def plan_patients(patients: int, seed: int, pe_fraction: float, other_fraction: float,
                  contrast: str) -> list[dict]:
    """Per-patient seed and options: exact PE count, independent other disease, contrast per study."""
    if not 0 <= pe_fraction <= 1 or not 0 <= other_fraction <= 1:
        raise ValueError("pe_fraction and other_fraction must lie in [0, 1]")
    if contrast not in ("ctpa", "none", "mixed"):
        raise ValueError(f"contrast must be 'ctpa', 'none' or 'mixed', got {contrast!r}")
    if contrast == "none" and pe_fraction > 0:
        raise ValueError("PE is only visible with contrast: use pe_fraction=0 with contrast='none'")
    rng = np.random.default_rng([int(seed), 7])
    n_pe = int(round(patients * pe_fraction))
    pe = np.zeros(patients, bool)
    pe[rng.permutation(patients)[:n_pe]] = True
    other = rng.random(patients) < other_fraction
    seeds = np.random.SeedSequence(int(seed)).generate_state(patients, dtype=np.uint32) % 2_000_000_000
    plans = []
    for i in range(patients):
        if contrast == "mixed":
            c = "ctpa" if pe[i] or rng.random() >= NONCONTRAST_FRACTION else "none"
        else:
            c = contrast
        plans.append({"index": i, "seed": int(seeds[i]), "pe": bool(pe[i]), "other": bool(other[i]), "contrast": c})
    return plans


def generate_dataset(out_dir: "str | Path", patients: int, seed: int, pe_fraction: float = 0.5,
                     other_fraction: float = 0.35, contrast: str = "mixed", matrix: int = 512,
                     slices: "int | tuple[int, int] | None" = None, difficulty: str = "mixed",
                     progress: "Callable[[int, int], None] | None" = None) -> Path:
    """Write `patients` studies under out_dir/<patient_id>/ and out_dir/manifest.csv; return the manifest path.

    slices: fixed count, a (min, max) range drawn per study, or None (the generator's choice).
    progress(done, total) is called after each study.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_patients(patients, seed, pe_fraction, other_fraction, contrast)
    rows = []
    for plan in plans:
        n = slices
        if isinstance(slices, (tuple, list)):
            n = int(np.random.default_rng([plan["seed"], 3]).integers(slices[0], slices[1] + 1))
        study = generate_study(plan["seed"], matrix=matrix, slices=n, contrast=plan["contrast"], pe=plan["pe"],
                               other=plan["other"], difficulty=difficulty)
        pid = study.volume.metadata["patient_id"]
        paths = write_study(study, out / pid)
        rows.append({
            "patient_id": pid,
            "series_dir": paths["series_dir"].relative_to(out).as_posix(),
            "labels_csv": paths["labels_csv"].relative_to(out).as_posix(),
            "mask": paths["mask"].relative_to(out).as_posix(),
            "patient_label": study.patient_label,
            "contrast": plan["contrast"],
            "findings": ";".join(study.finding_names),
            "seed": plan["seed"],
        })
        log.debug("%s: %s %s", pid, study.patient_label, rows[-1]["findings"])
        if progress is not None:
            progress(plan["index"] + 1, patients)
    return write_manifest(out, rows)
