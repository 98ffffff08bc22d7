"""generate_study: one synthetic chest CT with exact voxel masks and slice labels."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from .anatomy import TISSUES, Patient, sample_patient
from .disease import Lesion, plan_lesions
from .findings import FINDING_CODES, OTHER_KINDS, Finding, plan_emboli
from .grid import Grid
from .noise import blur_and_noise, smooth_field
from .render import SliceRenderer
from .protocol import Protocol, sample_protocol, study_identifiers
from .vessels import Tubes, Vasculature, build_vasculature, paint_tubes, tube_fraction

log = logging.getLogger(__name__)

FLAG_NAMES = ("pe", "consolidation", "ggo", "nodule", "effusion", "emphysema")
DIFFICULTIES = ("mixed", "easy", "hard")


@dataclass
class Study:
    """A phantom study: the CT volume plus its ground truth."""

    volume: CTVolume
    masks: np.ndarray  # uint8 (k, j, i), FINDING_CODES values, 0 = none
    slice_labels: list[str]  # per slice: "pe" > "other" > "wnl"
    patient_label: str
    findings: list[Finding]
    tissues: np.ndarray  # uint8 (k, j, i), anatomy.TISSUES values (normal anatomy)
    slice_flags: dict[str, np.ndarray] = field(default_factory=dict)  # FLAG_NAMES -> bool (k,)
    seed: int = 0
    options: dict = field(default_factory=dict)
    # real-anatomy studies: uint16 (k, j, i) clot number (0 = none, n = clot_levels[n - 1]), for per-level scores
    clot_ids: "np.ndarray | None" = None
    clot_levels: list[str] = field(default_factory=list)

    @property
    def finding_names(self) -> list[str]:
        return sorted({f.kind for f in self.findings})


def _choose(rng: np.random.Generator, contrast, pe, other, difficulty, other_kinds) -> tuple[bool, bool, list[str]]:
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if contrast not in (None, "ctpa", "none"):
        raise ValueError(f"contrast must be 'ctpa', 'none' or None, got {contrast!r}")
    has_pe = bool(rng.random() < 0.5) if pe is None else bool(pe)
    if has_pe and contrast == "none":
        raise ValueError("a PE is only visible against contrast: use contrast='ctpa' (or None) with pe=True")
    ctpa = has_pe or (contrast == "ctpa") or (contrast is None and rng.random() < 0.7)
    has_other = bool(rng.random() < 0.35) if other is None else bool(other)
    kinds: list[str] = []
    if other_kinds is not None:
        bad = set(other_kinds) - set(OTHER_KINDS)
        if bad:
            raise ValueError(f"unknown other_kinds {sorted(bad)}; choose from {OTHER_KINDS}")
        kinds = [k for k in OTHER_KINDS if k in other_kinds]
    elif has_other:
        n = int(rng.choice([1, 1, 1, 2, 2, 3]))
        kinds = sorted(rng.choice(OTHER_KINDS, size=n, replace=False, p=[0.28, 0.24, 0.24, 0.14, 0.10]).tolist(),
                       key=OTHER_KINDS.index)
    return ctpa, has_pe, kinds


def _blend(hu: np.ndarray, frac: np.ndarray, value: float, tissue: np.ndarray | None = None,
           code: int = 0, chunk: int = 16) -> None:
    """hu <- hu + f (value - hu) with f = frac/255, on the (sparse) non-zero voxels, slab by slab."""
    for k in range(0, len(hu), chunk):
        f = frac[k:k + chunk].reshape(-1)
        idx = np.flatnonzero(f)
        if idx.size == 0:
            continue
        h = hu[k:k + chunk].reshape(-1)  # views: hu is C-contiguous
        fv = f[idx]
        h[idx] += fv.astype(np.float32) * (1 / 255) * (value - h[idx])
        if tissue is not None:
            tissue[k:k + chunk].reshape(-1)[idx[fv >= 128]] = code


def _paint_structures(p: Patient, grid: Grid, vasc: Vasculature, hu: np.ndarray, tissue: np.ndarray):
    """Aorta, SVC, veins, arteries and airways over the static anatomy; returns artery and vein fractions."""
    T, shape = TISSUES, hu.shape
    scratch = np.zeros(shape, np.uint8)
    svc_hu = p.hu["pa"] * 1.6 if p.contrast else p.hu["blood"]  # undiluted contrast arriving from the arm
    for tubes, value, code in ((vasc.aorta, p.hu["aorta"], T["aorta"]), (vasc.svc, svc_hu, T["vein"])):
        scratch.fill(0)
        paint_tubes(grid, tubes, scratch)
        _blend(hu, scratch, value, tissue, code)
    vein = np.zeros(shape, np.uint8)
    paint_tubes(grid, vasc.veins, vein)
    _blend(hu, vein, p.hu["vein"], tissue, T["vein"])
    art = np.zeros(shape, np.uint8)
    paint_tubes(grid, vasc.arteries, art)
    _blend(hu, art, p.hu["pa"], tissue, T["artery"])
    scratch.fill(0)
    paint_tubes(grid, vasc.airways, scratch, grow=0.6, scale=1.25)
    _blend(hu, scratch, 10.0, tissue, T["airway_wall"])
    np.minimum(art, 255 - scratch, out=art)  # an airway (wall and lumen) drawn over an artery hides it
    scratch.fill(0)
    paint_tubes(grid, vasc.airways, scratch)
    _blend(hu, scratch, -1000.0, tissue, T["airway"])
    return art, vein


def _paint_lesions(hu: np.ndarray, masks: np.ndarray, lesions: list[Lesion], after: bool,
                   art: np.ndarray, vein: np.ndarray, texture: np.ndarray) -> None:
    for les in lesions:
        if les.after_vessels != after:
            continue
        box, m = les.box, les.mask
        if not after:  # vessels are drawn over these later; their cores are not part of the lesion
            m = m & (art[box] < 128) & (vein[box] < 128)
        region = hu[box]
        if les.mode == "add":
            region[m] += les.value
        else:
            region[m] = les.value + 8.0 * texture[box][m]
        masks[box][m] = FINDING_CODES[les.finding.kind]
        if after:  # lesion replaces the vessels there
            art[box][les.mask] = 0


def _clot_fraction(grid: Grid, clots: Tubes, shape: tuple) -> np.ndarray:
    q = np.zeros(shape, np.uint8)
    paint_tubes(grid, clots, q)
    return q


def _paint_emboli(hu: np.ndarray, grid: Grid, clots: Tubes, clot_hu: list[float], art: np.ndarray,
                  pa_hu: float) -> None:
    """Replace contrast by clot inside the lumen, in proportion to artery and clot fractions."""
    q = np.zeros(hu.shape, np.uint8)
    for n in range(len(clots)):
        got = tube_fraction(grid, clots.a[n], clots.b[n], clots.ra[n], clots.rb[n])
        if got is None:
            continue
        box, f = got
        new = np.maximum(f - q[box] * (1 / 255), 0.0)  # overlapping clot tubes count once
        hu[box] += art[box] * (1 / 255) * new * (clot_hu[n] - pa_hu)
        np.maximum(q[box], (f * 255 + 0.5).astype(np.uint8), out=q[box])


def _lung_texture(hu: np.ndarray, lung: np.ndarray, grid: Grid, p: Patient, rng: np.random.Generator):
    """Soft texture plus a gravity gradient (dependent lung is denser), added in place; returns the texture."""
    box = _bbox(lung)
    texture = np.zeros(hu.shape, np.float32)
    if box is None:
        return texture
    texture[box] = smooth_field(lung[box].shape, grid, rng, scale_mm=6.0)
    grav = (np.clip((grid.y[box[1]] / p.cav_ay + 1) / 2, 0, 1) * 45).astype(np.float32)[None, :, None]
    sub, m = hu[box], lung[box]
    sub[m] += (14 * texture[box] + grav)[m]
    return texture


def _bbox(mask: np.ndarray):
    """Index box (k, j, i slices) of the True voxels, or None."""
    out = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def _labels(masks: np.ndarray) -> tuple[list[str], dict[str, np.ndarray]]:
    counts = np.stack([np.bincount(sl.reshape(-1), minlength=len(FLAG_NAMES) + 1) for sl in masks])
    flags = {name: counts[:, FINDING_CODES[name]] > 0 for name in FLAG_NAMES}
    other = np.zeros(len(masks), bool)
    for name in FLAG_NAMES[1:]:
        other |= flags[name]
    labels = ["pe" if p else ("other" if o else "wnl") for p, o in zip(flags["pe"], other)]
    return labels, flags


def generate_study(seed: int, *, matrix: int = 512, slices: int | None = None, slice_thickness: float | None = None,
                   contrast: str | None = None, pe: bool | None = None, other: bool | None = None,
                   difficulty: str = "mixed", other_kinds: "Sequence[str] | None" = None) -> Study:
    """Generate one chest CT phantom, deterministic from `seed`.

    contrast: "ctpa" (opacified pulmonary arteries), "none", or None (random; PE studies are CTPA).
    pe / other: force PE / other lung disease on or off, None = random (50 % / 35 %).
    difficulty: "easy" = central/lobar emboli, "hard" = segmental/subsegmental, "mixed" = any.
    other_kinds: exactly these other findings (subset of OTHER_KINDS), overriding `other`.
    """
    seed = int(seed)
    rng = np.random.default_rng([seed, 20260101])
    ctpa, has_pe, kinds = _choose(rng, contrast, pe, other, difficulty, other_kinds)
    p = sample_patient(rng, ctpa)
    proto: Protocol = sample_protocol(p, rng, matrix, slices, slice_thickness)
    grid = proto.grid
    ids = study_identifiers(seed, len(grid.z), rng)
    vasc = build_vasculature(p, rng)
    log.debug("seed %d: %d artery, %d vein, %d airway segments", seed, len(vasc.arteries), len(vasc.veins),
              len(vasc.airways))
    shape = grid.shape
    hu = np.empty(shape, np.float32)
    tissue = np.empty(shape, np.uint8)
    render = SliceRenderer(p, grid, float(rng.random()))
    for k, z in enumerate(grid.z):
        render(float(z), hu[k], tissue[k])
    lung = tissue == TISSUES["lung"]
    texture = _lung_texture(hu, lung, grid, p, rng)
    masks = np.zeros(shape, np.uint8)
    lesions = plan_lesions(p, grid, lung, rng, kinds)
    art = vein = np.zeros(shape, np.uint8)
    _paint_lesions(hu, masks, lesions, False, art, vein, texture)  # before vessels: mask fixed below
    art, vein = _paint_structures(p, grid, vasc, hu, tissue)
    for les in lesions:
        if les.after_vessels:  # may replace lung vessels and airways, never the aorta
            les.mask &= tissue[les.box] != TISSUES["aorta"]
        else:  # vessels and airways drawn over early lesions are not lesion
            sub = masks[les.box]
            sub[les.mask & (tissue[les.box] != TISSUES["lung"]) & (sub == FINDING_CODES[les.finding.kind])] = 0
    _paint_lesions(hu, masks, lesions, True, art, vein, texture)
    findings: list[Finding] = []
    if has_pe:
        for _ in range(6):  # re-plan when the clots fall between thick slices or under a lesion
            clots, clot_hu, pe_findings = plan_emboli(vasc, rng, difficulty)
            # the PE mask: voxels that are mostly artery lumen and mostly clot
            pe_mask = (art >= 128) & (_clot_fraction(grid, clots, shape) >= 128)
            if pe_mask.any():
                _paint_emboli(hu, grid, clots, clot_hu, art, p.hu["pa"])
                masks[pe_mask] = FINDING_CODES["pe"]
                findings += pe_findings
                break
        else:
            log.warning("seed %d: no embolus could be placed in a visible artery", seed)
    del art, vein
    out = blur_and_noise(hu, grid, rng, proto.noise_hu)
    del hu
    np.clip(out, -1024, 3071, out=out)
    hu16 = np.rint(out).astype(np.int16)
    del out
    slice_labels, flags = _labels(masks)
    seen = set()
    for les in lesions:
        if id(les.finding) not in seen and flags[les.finding.kind].any():
            seen.add(id(les.finding))
            findings.append(les.finding)
    patient_label = "pe" if flags["pe"].any() else ("other" if "other" in slice_labels else "wnl")
    volume = _volume(hu16, grid, proto, ids, ctpa, seed)
    options = dict(matrix=matrix, slices=slices, slice_thickness=slice_thickness, contrast=contrast, pe=pe,
                   other=other, difficulty=difficulty, other_kinds=other_kinds)
    return Study(volume=volume, masks=masks, slice_labels=slice_labels, patient_label=patient_label,
                 findings=findings, tissues=tissue, slice_flags=flags, seed=seed, options=options)


def _volume(hu: np.ndarray, grid: Grid, proto: Protocol, ids: dict, ctpa: bool, seed: int) -> CTVolume:
    origin = (float(grid.x[0]), float(grid.y[0]), float(grid.z[0] + proto.z_offset))
    meta = {
        "patient_id": ids["patient_id"], "patient_name": ids["patient_name"], "study_uid": ids["study_uid"],
        "series_uid": ids["series_uid"], "frame_of_reference_uid": ids["frame_of_reference_uid"],
        "study_date": ids["study_date"], "accession_number": ids["accession"],
        "series_description": "CTPA chest" if ctpa else "Chest without contrast",
        "study_description": "CT pulmonary angiogram" if ctpa else "CT chest",
        "modality": "CT", "manufacturer": "PETriage phantom", "kernel": proto.kernel,
        "contrast_agent": "Iodinated contrast (phantom)" if ctpa else None,
        "slice_thickness": grid.thickness, "kvp": proto.kvp, "tube_current": proto.ma,
        "patient_sex": ids["sex"], "patient_age": ids["age"], "noise_hu": round(proto.noise_hu, 2), "seed": seed,
    }
    return CTVolume(hu=hu, spacing=(grid.pixel, grid.pixel, grid.dz), origin=origin, direction=np.eye(3),
                    z_positions=grid.z + proto.z_offset, instance_uids=list(ids["instance_uids"]), metadata=meta)
