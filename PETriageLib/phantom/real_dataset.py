"""generate_real_dataset: many real-anatomy phantoms over a folder of cases, plus a manifest.csv."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from PETriageLib.errors import AnatomyError
from .dataset import plan_patients, write_manifest
from .findings import OTHER_KINDS
from .real_case import case_paths
from .real_render import PHASES
from .real_study import RealOptions, generate_real_studies
from .real_writer import write_real_studies

log = logging.getLogger(__name__)


def list_cases(folder: "str | Path") -> list[str]:
    """Case IDs of a CAD-PE style folder: every ID.nii.gz that has an ID_lungmask.nii.gz beside it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AnatomyError(f"{folder}: no such folder of real cases")
    ids = sorted(p.name[:-len(".nii.gz")] for p in folder.glob("*.nii.gz") if not p.name.endswith("_lungmask.nii.gz"))
    ids = [i for i in ids if case_paths(folder, i)[1].is_file()]
    if not ids:
        raise AnatomyError(f"{folder}: no case with both ID.nii.gz and ID_lungmask.nii.gz")
    return ids


def generate_real_dataset(out_dir: "str | Path", cases_dir: "str | Path", patients: int, seed: int,
                          cases: "Sequence[str] | None" = None, phases: Sequence[str] = PHASES,
                          pe_fraction: float = 0.5, other_fraction: float = 0.35, base: RealOptions = RealOptions(),
                          progress: "Callable[[int, int], None] | None" = None) -> Path:
    """Patient i is built on case i mod len(cases); one manifest row per written series."""
    ids = list(cases) if cases else list_cases(cases_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for plan in plan_patients(patients, seed, pe_fraction, other_fraction, "ctpa"):
        case_id = ids[plan["index"] % len(ids)]
        rng = np.random.default_rng([plan["seed"], 5])
        kinds = sorted(rng.choice(OTHER_KINDS, size=int(rng.integers(1, 3)), replace=False).tolist()) \
            if plan["other"] else []
        opts = RealOptions(pe=plan["pe"], other_kinds=tuple(kinds), difficulty=base.difficulty, kernel=base.kernel,
                           slice_thickness=base.slice_thickness, pixel_mm=base.pixel_mm)
        studies = generate_real_studies(cases_dir, case_id, plan["seed"], phases, opts)
        pid = next(iter(studies.values())).volume.metadata["patient_id"]
        for phase, paths in write_real_studies(studies, out / pid).items():
            study = studies[phase]
            rows.append({"patient_id": pid, "series_dir": paths["series_dir"].relative_to(out).as_posix(),
                         "labels_csv": paths["labels_csv"].relative_to(out).as_posix(),
                         "mask": paths["mask"].relative_to(out).as_posix(), "patient_label": study.patient_label,
                         "contrast": "ctpa" if phase == "ctpa" else "none",
                         "findings": ";".join(study.finding_names), "seed": plan["seed"]})
        log.debug("%s on %s: %s", pid, case_id, rows[-1]["findings"])
        if progress is not None:
            progress(plan["index"] + 1, patients)
    return write_manifest(out, rows)
