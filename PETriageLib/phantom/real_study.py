"""generate_real_studies: phantoms on a real case's anatomy, in CTPA and/or non-contrast phase.

The geometry (tissues, clots, lesions, masks, slice labels) is made once and rendered once per
phase, so the phases differ only in HU (and the series' own UIDs).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from PETriageLib.errors import AnatomyError
from PETriageLib.ingest.volume import CTVolume
from .centrelines import centre_points, lumen_radius
from .findings import FINDING_CODES, OTHER_KINDS, Finding
from .grid import Grid
from .kernel_noise import KERNELS, noise_for_thickness
from .protocol import seeded_uid
from .real_body import build_body
from .real_case import RealCase, load_case, resample_case
from .real_disease import plan_real_lesions
from .real_emboli import Clot, plan_clots
from .real_fit import load_fit
from .real_render import PHASES, lung_texture, render_phase, sample_phases
from .study import Study, _labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RealOptions:
    pe: bool = True
    other_kinds: Sequence[str] = ()
    difficulty: str = "mixed"
    kernel: str = "soft"
    clots: "int | None" = None  # None: 1 + Poisson drawn from the FUMPE fit
    slice_thickness: "float | None" = None  # None: the case's own slices
    pixel_mm: "float | None" = None  # None: the case's own pixels (coarser for quick tests)


def generate_real_studies(folder, case_id: str, seed: int, phases: Sequence[str] = PHASES,
                          options: RealOptions = RealOptions()) -> dict[str, Study]:
    """{phase: Study} for phases among "ctpa", "non_contrast"; same seed, same studies."""
    bad = set(phases) - set(PHASES)
    if bad or not phases:
        raise ValueError(f"phases must be among {PHASES}, got {list(phases)}")
    if options.kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {tuple(KERNELS)}, got {options.kernel!r}")
    unknown = set(options.other_kinds) - set(OTHER_KINDS)
    if unknown:
        raise ValueError(f"unknown other_kinds {sorted(unknown)}; choose from {OTHER_KINDS}")
    case = resample_case(load_case(folder, case_id), options.pixel_mm, options.slice_thickness)
    return render_case(case, seed, phases, options)


def render_case(case: RealCase, seed: int, phases: Sequence[str], options: RealOptions) -> dict[str, Study]:
    rng = np.random.default_rng([int(seed), 20261121])
    fit = load_fit()
    tissue, frame = build_body(case, rng)
    x, y, z = case.axes()
    grid = Grid(x=x, y=y, z=z, thickness=case.spacing[2])
    masks = np.zeros(case.shape, np.uint8)
    edits: list[tuple] = []
    findings: list[Finding] = []
    lesions = plan_real_lesions(tissue, grid, frame, rng, [k for k in OTHER_KINDS if k in options.other_kinds])
    for les in lesions:
        masks[les.box][les.mask] = FINDING_CODES[les.finding.kind]
        edits.append((les.box, les.mask, les.mode, les.value))
    clots: list[Clot] = []
    clot_ids = np.zeros(case.shape, np.uint16)
    if options.pe:
        radius = lumen_radius(case.artery, case.spacing)
        clots = plan_clots(case.artery, radius, centre_points(radius), case.spacing, fit["clots"], rng,
                           options.difficulty, options.clots)
        if not clots:
            raise AnatomyError(f"{case.source}: no embolus could be placed in its artery mask")
        for n, c in enumerate(clots, start=1):
            masks[c.box][c.mask] = FINDING_CODES["pe"]
            clot_ids[c.box][c.mask] = n
            side = "left" if x[c.box[2]].mean() > frame.centre_x else "right"
            findings.append(c.finding(case.spacing, side))
    slice_labels, flags = _labels(masks)
    _check_truth(masks, case, slice_labels)
    seen: set[int] = set()
    for les in lesions:  # one finding per lesion group (emphysema: many holes, one finding)
        if id(les.finding) not in seen and flags[les.finding.kind].any():
            seen.add(id(les.finding))
            findings.append(les.finding)
    patient_label = "pe" if flags["pe"].any() else ("other" if "other" in slice_labels else "wnl")
    hu_tables = sample_phases(rng, fit["enhancement"])
    texture = lung_texture(tissue, grid, rng)
    enh = fit["enhancement"]
    noise = noise_for_thickness(enh["noise_hu"], enh["noise_spacing_mm"][2], case.spacing[2], options.kernel)
    noise *= float(rng.uniform(0.8, 1.25))
    noise_seed = int(rng.integers(2**31))
    out = {}
    for phase in phases:
        phase_edits = edits + [(c.box, c.mask, "set", c.ctpa_hu if phase == "ctpa" else c.plain_hu) for c in clots]
        hu = render_phase(tissue, hu_tables[phase], texture, phase_edits, grid, noise, options.kernel, noise_seed)
        vol = _volume(hu, case, seed, phase, noise, options.kernel)
        out[phase] = Study(volume=vol, masks=masks, slice_labels=slice_labels, patient_label=patient_label,
                           findings=findings, tissues=tissue, slice_flags=flags, seed=int(seed),
                           options={"anatomy": "real", "case": case.case_id, "phase": phase,
                                    "pe": options.pe, "other_kinds": list(options.other_kinds),
                                    "difficulty": options.difficulty, "kernel": options.kernel,
                                    "slice_thickness": case.spacing[2], "pixel_mm": case.spacing[0],
                                    "hu": hu_tables[phase].values},
                           clot_ids=clot_ids, clot_levels=[c.level for c in clots])
    log.debug("%s seed %d: %d clots, %d lesions", case.case_id, seed, len(clots), len(lesions))
    return out


def _check_truth(masks: np.ndarray, case: RealCase, slice_labels: list[str]) -> None:
    """The generator never hands out a study whose labels disagree with its mask or a clot off the lumen."""
    pe = masks == FINDING_CODES["pe"]
    if (pe & ~case.artery).any():
        raise AssertionError("a clot voxel lies outside the artery lumen")
    if [lab == "pe" for lab in slice_labels] != list(pe.any(axis=(1, 2))):
        raise AssertionError("slice labels disagree with the PE mask")


def _volume(hu: np.ndarray, case: RealCase, seed: int, phase: str, noise: float, kernel: str) -> CTVolume:
    def uid(*parts) -> str:
        return str(seeded_uid("petriage-real-phantom", case.case_id, seed, *parts))

    ctpa = phase == "ctpa"
    n = hu.shape[0]
    pid = f"REAL-{case.case_id}-{seed}"
    meta = {
        "patient_id": pid, "patient_name": f"Phantom^{case.case_id}^{seed}", "study_uid": uid("study"),
        "series_uid": uid("series", phase), "frame_of_reference_uid": uid("frame"), "study_date": "20260101",
        "accession_number": f"RP{seed % 10**8:08d}",
        "series_description": "CTPA chest" if ctpa else "Chest without contrast",
        "study_description": "CT pulmonary angiogram" if ctpa else "CT chest",
        "modality": "CT", "manufacturer": "PETriage phantom", "kernel": KERNELS[kernel],
        "contrast_agent": "Iodinated contrast (phantom)" if ctpa else None,
        "slice_thickness": case.spacing[2], "kvp": 100 if ctpa else 120, "tube_current": 200,
        "patient_sex": "O", "patient_age": 60, "noise_hu": round(noise, 2), "seed": seed,
        "anatomy_source": case.source,
    }
    z = case.origin[2] + case.spacing[2] * np.arange(n)
    return CTVolume(hu=hu, spacing=case.spacing, origin=case.origin, direction=np.eye(3), z_positions=z,
                    instance_uids=[uid("instance", phase, k) for k in range(n)], metadata=meta)

