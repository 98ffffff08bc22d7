"""`petriage phantom-realism`: tissue HU, noise spectra and the two-sample test, on the real series
and on volumes whose answer is known by construction."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from PETriageLib.bench.realism.nps import noise_spectrum
from PETriageLib.bench.realism.sets import real_contrast_artery
from PETriageLib.bench.realism.tissue import masked_stats, tissue_stats
from PETriageLib.bench.realism.two_sample import FEATURES, two_sample_test
from PETriageLib.cli import main
from PETriageLib.ingest.load import load_series
from support.data_paths import CADPE_VESSELS, LUNG_PET_CT_DX, SHARED_DATA
from support.dicom_factory import ct_volume


def uniform_body(noise: np.ndarray) -> "object":
    """A 40 HU elliptic body in air, with the given noise added inside it."""
    n, rows, cols = noise.shape
    yy, xx = np.ogrid[:rows, :cols]
    body = ((yy - rows / 2) / (0.4 * rows)) ** 2 + ((xx - cols / 2) / (0.42 * cols)) ** 2 < 1
    hu = np.full(noise.shape, -1000.0)
    hu[:, body] = 40.0
    hu += noise
    return ct_volume(np.round(hu).astype(np.int16), spacing=(0.7, 0.7, 5.0))


def test_noise_spectrum_of_white_and_correlated_noise():
    rng = np.random.default_rng(3)
    white = rng.normal(0, 20, (4, 256, 256))
    smooth = ndimage.gaussian_filter(white, sigma=(0, 1.2, 1.2))
    smooth *= 20 / smooth.std()  # the same SD, a soft kernel's texture
    w, s = noise_spectrum(uniform_body(white)), noise_spectrum(uniform_body(smooth))
    assert w is not None and s is not None and w.rois >= 30
    assert w.noise_sd == pytest.approx(20, rel=0.06) and s.noise_sd == pytest.approx(20, rel=0.15)
    inner = np.asarray(w.nps[1:])  # white noise: flat spectrum
    assert inner.max() / inner.min() < 1.6
    # correlated noise puts its power at low frequencies
    assert s.mean_frequency < 0.6 * w.mean_frequency
    # Parseval: the ring means times the ring areas add up to the variance (white noise, no DC)
    f = np.asarray(w.frequencies)
    width = f[1] - f[0]
    assert float(np.sum(np.asarray(w.nps) * 2 * np.pi * f * width)) == pytest.approx(400, rel=0.25)


def test_tissue_hu_of_the_real_pneumonia_series(real_series_dir):
    stats = tissue_stats(load_series(real_series_dir))
    assert -900 < stats["lung"].mean < -750
    assert -130 < stats["fat"].mean < -60
    assert 15 < stats["soft_tissue"].mean < 70
    assert stats["bone"].mean > 300 and stats["air"].mean < -900
    assert all(stats[t].voxels > 10_000 for t in stats)


@pytest.mark.skipif(not (SHARED_DATA / "real" / "ctpa-crops").is_dir(), reason="ctpa-crops not in ../shared/data")
def test_real_contrast_artery_is_enhanced():
    hu, mask = real_contrast_artery()
    stats = masked_stats(hu, mask)
    assert 480 < stats.mean < 600 and 20 < stats.sd < 120  # the README: mean about 537 HU


def _features(rng, n, shift=0.0):
    x = rng.normal(0, 1, (n, len(FEATURES))).astype(np.float32)
    x[:, 3] += shift
    return x


def test_two_sample_test_tells_shifted_from_identical():
    rng = np.random.default_rng(0)
    real = [(f"r{k}", _features(rng, 30)) for k in range(3)]
    same = two_sample_test(real, [(f"p{k}", _features(rng, 30)) for k in range(4)], trees=60)
    apart = two_sample_test(real, [(f"p{k}", _features(rng, 30, shift=3.0)) for k in range(4)], trees=60)
    assert 0.3 < same.auroc < 0.7
    assert apart.auroc > 0.95 and apart.top_features[0][0] == FEATURES[3]
    assert apart.real_patients == 3 and apart.phantom_patients == 4 and len(apart.fold_auroc) == 3


def test_two_sample_test_needs_two_patients_a_side():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="at least 2 real and 2 phantom patients"):
        two_sample_test([("r", _features(rng, 10))], [("a", _features(rng, 10)), ("b", _features(rng, 10))])


@pytest.mark.slow
@pytest.mark.skipif(not (CADPE_VESSELS.is_dir() and LUNG_PET_CT_DX.is_dir()), reason="real data not in ../shared/data")
def test_phantom_realism_command(tmp_path, real_series_dir):
    out = tmp_path / "realism"
    assert main(["phantom-realism", "--out", str(out), "--formula-seeds", "0", "1", "--cases", "016", "e0042",
                 "--slice-thickness", "5", "--slices-per-series", "8", "--no-progress"]) == 0
    report = json.loads((out / "realism.json").read_text())
    sources = [s["source"] for s in report["series"]]
    assert sources.count("real") == 5 and sources.count("formula") == 2 and sources.count("real_anatomy") == 2
    assert set(report["two_sample"]) == {"formula", "real_anatomy"}
    for result in report["two_sample"].values():
        assert 0.0 <= result["auroc"] <= 1.0 and result["real_patients"] == 3 and result["phantom_patients"] == 2
    phantoms = [s for s in report["series"] if s["source"] != "real"]
    assert all(s["contrast_artery"]["mean"] > 150 for s in phantoms)  # the CTPA rendering is enhanced
    text = (out / "realism.md").read_text()
    assert "HU per tissue" in text and "two-sample" in text and "real-anatomy phantoms" in text
