"""Fit the statistics real-anatomy phantoms draw from: FUMPE clot sizes and ctpa-crops enhancement.

`python -m PETriageLib.phantom.real_fit ../shared/data` rewrites real_fit.json beside this file.
Clots are the 26-connected components of each FUMPE mask (specks under MIN_CLOT_MM3 are left
out: annotation noise, not emboli). Volume, length (extent along the clot's principal axis) and
slice extent (z) are fitted with log-normal laws (scipy.stats.lognorm, location 0).
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, stats

from PETriageLib.errors import AnatomyError

log = logging.getLogger(__name__)

FIT_PATH = Path(__file__).with_name("real_fit.json")
MIN_CLOT_MM3 = 20.0


@dataclass(frozen=True)
class LogNormal:
    """log X ~ N(mu, sigma); median = exp(mu)."""

    mu: float
    sigma: float

    def sample(self, rng: np.random.Generator, lo: float = 0.0, hi: float = np.inf) -> float:
        return float(np.clip(np.exp(rng.normal(self.mu, self.sigma)), lo, hi))

    def percentile(self, q: float) -> float:
        return float(np.exp(self.mu + self.sigma * stats.norm.ppf(q / 100)))


@dataclass(frozen=True)
class ClotStats:
    """Measured clots of one mask: per clot volume (mL), length (mm), slice extent (mm)."""

    volume_ml: np.ndarray
    length_mm: np.ndarray
    extent_mm: np.ndarray


def _read_mask(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    try:
        img = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    except RuntimeError as exc:
        raise AnatomyError(f"{path}: cannot be read as an image ({exc})") from None
    return sitk.GetArrayFromImage(img) > 0, tuple(float(v) for v in img.GetSpacing())


def measure_clots(path: Path) -> ClotStats:
    """The clots of one FUMPE mask, each a 26-connected component of at least MIN_CLOT_MM3."""
    mask, (sx, sy, sz) = _read_mask(path)
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    vox = sx * sy * sz
    vols, lengths, extents = [], [], []
    for sl, idx in zip(ndimage.find_objects(lab), range(1, n + 1)):
        k, j, i = np.nonzero(lab[sl] == idx)
        if k.size * vox < MIN_CLOT_MM3:
            continue
        pts = np.stack([i * sx, j * sy, k * sz], axis=1)
        pts -= pts.mean(axis=0)
        axis = np.linalg.svd(pts, full_matrices=False)[2][0] if len(pts) > 1 else np.array([0, 0, 1.0])
        proj = pts @ axis
        vols.append(k.size * vox / 1000)
        lengths.append(float(proj.max() - proj.min()) + sz)
        extents.append(float((k.max() - k.min() + 1) * sz))
    return ClotStats(np.array(vols), np.array(lengths), np.array(extents))


def _lognormal(values: np.ndarray) -> LogNormal:
    sigma, _, scale = stats.lognorm.fit(values, floc=0)
    return LogNormal(mu=float(np.log(scale)), sigma=float(sigma))


def fit_fumpe(folder: Path) -> dict:
    """Fitted laws plus the empirical quartiles they are compared with in docs/phantom.md."""
    files = sorted(Path(folder).glob("PAT*.nii.gz"))
    if not files:
        raise AnatomyError(f"{folder}: no FUMPE clot masks (PAT*.nii.gz)")
    per = [measure_clots(f) for f in files]
    counts = np.array([len(c.volume_ml) for c in per])
    out: dict = {"source": "FUMPE clot masks (Masoudi et al., Sci Data 5, 180180, 2018), "
                           f"{len(files)} patients, components >= {MIN_CLOT_MM3:g} mm3",
                 "patients": len(files), "patients_with_clot": int((counts > 0).sum()),
                 "clots": int(counts.sum())}
    for name in ("volume_ml", "length_mm", "extent_mm"):
        values = np.concatenate([getattr(c, name) for c in per])
        law = _lognormal(values)
        out[name] = {"lognormal": asdict(law),
                     "empirical_p25_p50_p75": [round(float(v), 3) for v in np.percentile(values, [25, 50, 75])],
                     "fitted_p25_p50_p75": [round(law.percentile(q), 3) for q in (25, 50, 75)]}
    pos = counts[counts > 0]
    out["clots_per_patient"] = {"poisson_mean_minus_1": float(pos.mean() - 1),  # 1 + Poisson(lam)
                                "empirical_p25_p50_p75": [float(v) for v in np.percentile(pos, [25, 50, 75])]}
    return out


def fit_enhancement(crops: Path) -> dict:
    """Pulmonary artery HU and noise of the real CTPA crop (TotalSegmentator test data)."""
    ct_img = sitk.ReadImage(str(crops / "pulmonary" / "ct_cropped.nii.gz"))
    ct = sitk.GetArrayFromImage(ct_img).astype(np.float32)
    pa = sitk.GetArrayFromImage(sitk.ReadImage(str(crops / "pulmonary" / "pulmonary_artery.nii.gz"))) > 0
    aorta_ct = sitk.GetArrayFromImage(sitk.ReadImage(str(crops / "aorta" / "ct_cropped.nii.gz"))).astype(np.float32)
    aorta = sitk.GetArrayFromImage(sitk.ReadImage(str(crops / "aorta" / "aorta.nii.gz"))) > 0
    core = ndimage.binary_erosion(pa, iterations=3)
    pair = core[:, :, 1:] & core[:, :, :-1]
    # neighbour differences cancel the slowly varying enhancement and keep the noise
    noise = float((ct[:, :, 1:] - ct[:, :, :-1])[pair].std() / np.sqrt(2))
    return {"source": "TotalSegmentator test crops (ctpa-crops/pulmonary, ctpa-crops/aorta)",
            "pa_hu_p5_p50_p95": [round(float(v), 1) for v in np.percentile(ct[pa], [5, 50, 95])],
            "pa_hu_mean": round(float(ct[pa].mean()), 1),
            "aorta_hu_median": round(float(np.median(aorta_ct[aorta])), 1),
            "noise_hu": round(noise, 2), "noise_spacing_mm": [round(float(v), 3) for v in ct_img.GetSpacing()]}


def load_fit(path: Path = FIT_PATH) -> dict:
    return json.loads(Path(path).read_text())


def main(argv: "list[str] | None" = None) -> int:
    data = Path((argv or sys.argv[1:] or ["../shared/data"])[0]) / "real"
    fit = {"clots": fit_fumpe(data / "fumpe-clots"), "enhancement": fit_enhancement(data / "ctpa-crops")}
    FIT_PATH.write_text(json.dumps(fit, indent=1) + "\n")
    log.info("wrote %s", FIT_PATH)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
