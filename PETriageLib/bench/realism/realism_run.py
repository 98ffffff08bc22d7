"""All realism measures in one run: tissue HU and noise spectra per series, then the two-sample
test of each phantom set against the real series."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from PETriageLib.progress import Progress, report_progress
from .nps import NoiseSpectrum, noise_spectrum
from .sets import (DEFAULT_CASES, REAL_SERIES, Series, formula_series, real_anatomy_series, real_contrast_artery,
                   real_series)
from .tissue import HUStats, masked_stats, tissue_masks, tissue_stats
from .two_sample import TwoSampleResult, slice_features, two_sample_test

log = logging.getLogger(__name__)
SOURCES = ("real", "formula", "real_anatomy")


@dataclass(frozen=True)
class RealismOptions:
    formula_seeds: Sequence[int] = (0, 1, 2, 3, 4, 5)
    cases: Sequence[str] = DEFAULT_CASES
    slice_thickness: float = 5.0  # phantoms; the real series are 2, 5 and 8 mm
    slices_per_series: int = 40  # for the two-sample test
    seed: int = 0
    real_dir: "Path | None" = None  # default: ../shared/data/real
    cases_dir: "Path | None" = None  # default: ../shared/data/real/cadpe-vessels


@dataclass
class SeriesRealism:
    patient: str
    source: str
    name: str
    slices: int
    spacing: tuple[float, float, float]
    tissues: dict[str, "HUStats | None"]
    contrast_artery: "HUStats | None"
    noise: "NoiseSpectrum | None"


@dataclass
class RealismReport:
    options: dict
    series: list[SeriesRealism] = field(default_factory=list)
    real_contrast_artery: "HUStats | None" = None
    two_sample: dict[str, TwoSampleResult] = field(default_factory=dict)  # phantom set -> result

    def of(self, source: str) -> list[SeriesRealism]:
        return [s for s in self.series if s.source == source]

    def to_dict(self) -> dict:
        return asdict(self)


def measure_series(series: Series, seed: int) -> SeriesRealism:
    masks = tissue_masks(series.volume)
    artery = None
    if series.ctpa_hu is not None and series.artery is not None and series.artery.any():
        artery = masked_stats(series.ctpa_hu, series.artery, seed=seed)
    return SeriesRealism(series.patient, series.source, series.name, series.volume.num_slices,
                         tuple(round(float(s), 3) for s in series.volume.spacing),
                         tissue_stats(series.volume, seed, masks), artery, noise_spectrum(series.volume, seed, masks))


def all_series(options: RealismOptions) -> Iterable[Series]:
    yield from real_series(options.real_dir)
    yield from formula_series(options.formula_seeds, options.slice_thickness)
    yield from real_anatomy_series(options.cases, options.slice_thickness, options.seed, options.cases_dir)


def run_realism(options: RealismOptions = RealismOptions(), progress: Progress | None = None) -> RealismReport:
    """Measure every series of ``options`` (one at a time, so memory stays that of one series)."""
    report = RealismReport(options={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()
                                    if k not in ("real_dir", "cases_dir")})
    hu, mask = real_contrast_artery(options.real_dir)
    report.real_contrast_artery = masked_stats(hu, mask, seed=options.seed)
    total = len(REAL_SERIES) + len(options.formula_seeds) + len(options.cases)
    features: dict[str, list[tuple[str, np.ndarray]]] = {s: [] for s in SOURCES}
    for n, series in enumerate(all_series(options)):
        report.series.append(measure_series(series, options.seed))
        features[series.source].append((series.patient, slice_features(series.volume, options.slices_per_series,
                                                                        options.seed)))
        log.info("%s: %s measured", series.source, series.name)
        report_progress(progress, n + 1, total, "series")
    for source in ("formula", "real_anatomy"):
        report.two_sample[source] = two_sample_test(features["real"], features[source], options.seed)
    return report
