"""The stored fit: its source, log-normal laws close to the FUMPE clots they were fitted to, and the
clot measurement on a real mask."""
from __future__ import annotations

import numpy as np
import pytest

from PETriageLib.phantom.real_fit import LogNormal, load_fit, measure_clots
from Testing.support.data_paths import FUMPE_CLOTS


def test_stored_fit_names_its_sources_and_matches_its_quartiles():
    fit = load_fit()
    clots = fit["clots"]
    assert "FUMPE" in clots["source"] and clots["patients"] == 35 and clots["clots"] > 33
    assert "ctpa-crops" in fit["enhancement"]["source"]
    for name in ("volume_ml", "length_mm", "extent_mm"):
        emp, fitted = np.array(clots[name]["empirical_p25_p50_p75"]), np.array(clots[name]["fitted_p25_p50_p75"])
        assert np.all(np.abs(np.log(fitted / emp)) < 0.3), name  # within ~35 % at each quartile
        law = LogNormal(**clots[name]["lognormal"])
        assert law.percentile(50) == pytest.approx(fitted[1], rel=1e-3)


def test_lognormal_samples_follow_the_law():
    law = LogNormal(mu=3.5, sigma=0.7)
    rng = np.random.default_rng(0)
    x = np.array([law.sample(rng) for _ in range(4000)])
    assert np.median(x) == pytest.approx(np.exp(3.5), rel=0.05)
    assert max(law.sample(rng, 5, 20) for _ in range(200)) <= 20


@pytest.mark.skipif(not FUMPE_CLOTS.is_dir(), reason=f"FUMPE clot masks not found at {FUMPE_CLOTS}")
def test_measure_clots_on_a_real_mask():
    stats = measure_clots(FUMPE_CLOTS / "PAT001.nii.gz")
    assert len(stats.volume_ml) >= 1 and (stats.volume_ml > 0.02).all()
    assert (stats.length_mm >= 1.0).all() and (stats.extent_mm >= 1.0).all()
    assert stats.extent_mm.max() < 300
