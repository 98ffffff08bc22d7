"""CTPA / non-contrast pairs from a training manifest, for cross-phase (CPMN) training on your own series.

A pair is one patient with exactly one series of each phase (the manifest's ``contrast`` column:
``ctpa`` / ``none``; ``petriage phantom --anatomy real`` writes it). CPMN learns from the same voxels
in both phases, so the two series must lie on the same grid (slices, rows, columns, spacing, origin,
direction, slice positions: register them first where they do not), and the clots come from the CTPA series'
mask (on an NCT scan the clot is what the CTPA shows). Where the NCT row has a mask too, it must
agree with the CTPA one. A patient with one phase only is left out of cross-phase runs, with a warning.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Sequence

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.training.lesion_masks import PE_CODE, read_lesion_mask
from PETriageLib.training.loaders import load_source
from PETriageLib.training.manifest import ManifestError, Source
from PETriageLib.training.seg_manifest_data import MaskedSeries, masked_series

log = logging.getLogger(__name__)
PHASES = ("ctpa", "none")


@dataclass(frozen=True)
class PhasePair:
    """One patient's CTPA and non-contrast series."""

    ctpa: Source
    nct: Source

    @property
    def patient_id(self) -> str:
        return self.ctpa.patient_id


def phase_pairs(sources: Sequence[Source]) -> list[PhasePair]:
    """The manifest's CTPA / NCT pairs, by patient. A patient with two series of one phase is
    refused (which of them pairs is not said); one with a single phase, or with series whose phase
    the manifest does not give, is left out with a warning."""
    by_patient: dict[str, dict[str, list[Source]]] = defaultdict(lambda: defaultdict(list))
    for s in sources:
        by_patient[s.patient_id][s.contrast or "unknown"].append(s)
    pairs, single = [], []
    for pid, phases in by_patient.items():
        for phase in PHASES:
            if len(phases.get(phase, [])) > 1:
                raise ManifestError(f"patient {pid}: {len(phases[phase])} series with contrast {phase!r} "
                                    f"({', '.join(str(s.paths[0]) for s in phases[phase])}); a cross-phase pair "
                                    "needs exactly one CTPA and one non-contrast series")
        if phases.get("ctpa") and phases.get("none"):
            pairs.append(PhasePair(phases["ctpa"][0], phases["none"][0]))
        else:
            single.append(pid)
    if single:
        log.warning("%d of %d patients have no CTPA / non-contrast pair (the manifest's contrast column) and are "
                    "left out of cross-phase training: %s", len(single), len(by_patient), ", ".join(single[:10]))
    if not pairs:
        raise ManifestError("no patient has both a CTPA and a non-contrast series (the manifest's 'contrast' "
                            "column, ctpa / none): cross-phase models (CPMN) need such pairs")
    return pairs


def has_pairs(sources: Sequence[Source]) -> bool:
    """Whether any patient has both phases in the manifest."""
    phases = defaultdict(set)
    for s in sources:
        phases[s.patient_id].add(s.contrast)
    return any(set(PHASES) <= p for p in phases.values())


def check_same_grid(ctpa: CTVolume, nct: CTVolume, where: str) -> None:
    """Refuse two series that are not on one grid, with the first difference found."""
    if ctpa.hu.shape != nct.hu.shape:
        raise ManifestError(f"{where}: the CTPA series is {ctpa.hu.shape} (slices, rows, columns), the non-contrast "
                            f"one {nct.hu.shape}: a cross-phase pair must share its grid (register the NCT onto "
                            "the CTPA first)")
    spacing = np.asarray(ctpa.spacing, float)
    checks = (("spacing", spacing, np.asarray(nct.spacing, float), 1e-3 * spacing.max()),
              ("origin", np.asarray(ctpa.origin, float), np.asarray(nct.origin, float), 0.5 * spacing.min()),
              ("direction", np.asarray(ctpa.direction, float), np.asarray(nct.direction, float), 1e-3),
              ("slice positions", np.asarray(ctpa.z_positions, float), np.asarray(nct.z_positions, float),
               0.25 * spacing[2]))
    for name, a, b, tolerance in checks:
        off = float(np.abs(a - b).max())
        if off > tolerance:
            unit = "" if name == "direction" else " mm"
            raise ManifestError(f"{where}: the two phases differ in {name} by {off:.3g}{unit} (more than "
                                f"{tolerance:.3g}{unit}): a cross-phase pair must share its grid (register the NCT "
                                "onto the CTPA first)")


def paired_series(pairs: Iterable[PhasePair]) -> Iterator[MaskedSeries]:
    """Each pair as the CTPA series with its clots (``masked_series``) and the NCT volume
    (``MaskedSeries.nct``) on the same grid, one pair in memory at a time."""
    for pair in pairs:
        (series,) = masked_series([pair.ctpa])
        nct, _ = load_source(pair.nct)
        where = f"patient {pair.patient_id} ({pair.ctpa.paths[0]} and {pair.nct.paths[0]})"
        check_same_grid(series.volume, nct, where)
        if pair.nct.mask is not None and pair.nct.mask != pair.ctpa.mask:
            nct_pe = read_lesion_mask(pair.nct.mask, nct) == PE_CODE
            if not np.array_equal(nct_pe, series.masks > 0):
                raise ManifestError(f"{where}: the non-contrast mask {pair.nct.mask} and the CTPA mask "
                                    f"{pair.ctpa.mask} disagree on {int((nct_pe != (series.masks > 0)).sum())} PE "
                                    "voxels; the pair's clots must be the same")
        yield replace(series, nct=nct)


def nct_series(series: Iterable[MaskedSeries]) -> Iterator[MaskedSeries]:
    """The paired series as their non-contrast scans (same clots): what a CPMN model is scored on."""
    for s in series:
        if s.nct is None:
            raise ValueError(f"patient {s.patient_id}: no non-contrast series")
        yield replace(s, volume=s.nct, nct=None)
