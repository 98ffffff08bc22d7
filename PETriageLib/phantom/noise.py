"""Scanner effects: lung texture, partial-volume blur (point spread) and correlated CT noise."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grid import Grid


def _lerp(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower sample index and weight of the upper one, mapping n_in samples onto n_out (ends aligned)."""
    pos = np.linspace(0, n_in - 1, n_out)
    i0 = np.minimum(pos.astype(int), n_in - 2)
    return i0, (pos - i0).astype(np.float32)


def smooth_field(shape: tuple[int, int, int], grid: Grid, rng: np.random.Generator, scale_mm: float) -> np.ndarray:
    """Random field (a unit-variance coarse grid) with features about `scale_mm` across,
    trilinearly upsampled axis by axis (plain gathers, so results do not depend on BLAS threads)."""
    step = (max(grid.dz, 1e-3), grid.pixel, grid.pixel)
    coarse = [max(2, int(np.ceil(n * s / scale_mm)) + 1) for n, s in zip(shape, step)]
    field = rng.standard_normal(coarse, dtype=np.float32)
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    i0, a = _lerp(shape[2], coarse[2])
    field = field[:, :, i0] * (1 - a) + field[:, :, i0 + 1] * a
    j0, b = _lerp(shape[1], coarse[1])
    planes = field[:, j0] * (1 - b)[:, None] + field[:, j0 + 1] * b[:, None]  # (coarse k, nj, ni)
    k0, c = _lerp(shape[0], coarse[0])
    out = np.empty(shape, np.float32)
    for k in range(shape[0]):
        np.multiply(planes[k0[k]], 1 - c[k], out=out[k])
        out[k] += c[k] * planes[k0[k] + 1]
    return out


def blur_and_noise(hu: np.ndarray, grid: Grid, rng: np.random.Generator, noise_hu: float,
                   psf_mm: float = 0.75) -> np.ndarray:
    """Add white noise, then blur both by the in-plane point spread in one pass: the image gets
    partial-volume edges and the noise a ~1 mm correlation (as after filtered back projection)."""
    sig = max(psf_mm / grid.pixel, 0.5)
    radius = int(3 * sig + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sig) ** 2)
    w /= w.sum()
    gain = float((w ** 2).sum())  # std of 2-D filtered unit white noise
    # uniform samples are cheaper than normal ones; after the blur (a sum of ~10+ samples) the
    # noise is Gaussian by the central limit theorem. Var(U(-0.5, 0.5)) = 1/12.
    out = rng.random(hu.shape, dtype=np.float32)
    out -= 0.5
    out *= noise_hu * np.sqrt(12.0) / gain
    out += hu
    ndimage.gaussian_filter(out, sigma=(0, sig, sig), output=out, truncate=3.0)
    return out
