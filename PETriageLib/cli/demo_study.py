"""The study `petriage demo` triages: a real-anatomy CTPA phantom on a CAD-PE case when
../shared/data is there, else the formula phantom (a fresh clone may lack the shared data)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PETriageLib.errors import AnatomyError
from PETriageLib.phantom.study import Study

log = logging.getLogger("petriage.demo")

# e0485: 81 slices of 3 mm, the smallest CAD-PE case, so the demo stays about a minute.
DEMO_CASE = "e0485"


@dataclass
class DemoStudy:
    study: Study
    series_dir: Path
    anatomy: str  # "real" or "formula"
    source: str  # the case or seed, for the printed ground truth


def make_demo_study(out_dir: Path, seed: int, pe: bool, anatomy: str = "real", case: str = DEMO_CASE,
                    matrix: int = 512, slices: "int | None" = 120) -> DemoStudy:
    """Write the demo study under out_dir/study; anatomy 'real' falls back to 'formula' with a warning."""
    if anatomy == "real":
        try:
            return _real(out_dir, seed, pe, case)
        except AnatomyError as err:
            log.warning("real-anatomy demo study unavailable (%s); using the formula phantom instead", err)
    from PETriageLib.phantom import generate_study, write_study

    study = generate_study(seed, matrix=matrix, slices=slices, pe=pe, contrast="ctpa" if pe else None,
                           difficulty="easy")
    return DemoStudy(study, write_study(study, out_dir / "study")["series_dir"], "formula", f"seed {seed}")


def _real(out_dir: Path, seed: int, pe: bool, case: str) -> DemoStudy:
    from PETriageLib.phantom.cases_dir import require_cases_dir
    from PETriageLib.phantom.real_study import RealOptions, generate_real_studies
    from PETriageLib.phantom.real_writer import write_real_studies

    folder = require_cases_dir(None)
    if not (folder / f"{case}_lungmask.nii.gz").is_file():
        raise AnatomyError(f"case {case} not found in {folder}")
    log.info("generating real-anatomy study on CAD-PE case %s (seed %d)", case, seed)
    studies = generate_real_studies(folder, case, seed, phases=("ctpa",),
                                    options=RealOptions(pe=pe, difficulty="easy"))
    paths = write_real_studies(studies, out_dir / "study")
    return DemoStudy(studies["ctpa"], paths["ctpa"]["series_dir"], "real", f"CAD-PE case {case}, seed {seed}")
