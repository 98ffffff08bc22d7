"""Kernel-textured noise: the requested amplitude, soft grain coarser than sharp grain."""
from __future__ import annotations

import numpy as np
import pytest

from PETriageLib.phantom.kernel_noise import kernel_noise, noise_for_thickness


def _neighbour_corr(n: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(n[:, :, :-lag].ravel(), n[:, :, lag:].ravel())[0, 1])


@pytest.mark.parametrize("kernel", ["soft", "sharp"])
def test_amplitude_is_the_requested_one(kernel):
    n = kernel_noise((4, 128, 128), 0.7, 30.0, kernel, np.random.default_rng(1))
    assert n.std() == pytest.approx(30.0, rel=0.05) and abs(n.mean()) < 1.0


def test_soft_noise_is_correlated_sharp_noise_fine_grained():
    soft = kernel_noise((4, 128, 128), 0.7, 20.0, "soft", np.random.default_rng(2))
    sharp = kernel_noise((4, 128, 128), 0.7, 20.0, "sharp", np.random.default_rng(2))
    assert _neighbour_corr(soft, 1) > 0.6
    assert _neighbour_corr(sharp, 1) < _neighbour_corr(soft, 1) - 0.2
    assert _neighbour_corr(sharp, 3) < 0  # the sharp kernel's negative lobe
    # slices are independent (each is its own reconstruction)
    assert abs(np.corrcoef(soft[0].ravel(), soft[1].ravel())[0, 1]) < 0.05


def test_noise_falls_with_slice_thickness():
    assert noise_for_thickness(26.0, 1.5, 6.0, "soft") == pytest.approx(13.0)
    assert noise_for_thickness(26.0, 1.5, 1.5, "sharp") == pytest.approx(52.0)
