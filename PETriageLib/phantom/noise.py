"""Scanner effects: lung texture, partial-volume blur (point spread) and correlated CT noise."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grid import Grid


def smooth_field(shape: tuple[int, int, int], grid: Grid, rng: np.random.Generator, scale_mm: float) -> np.ndarray:
    """Unit-variance random field with features about `scale_mm` across (built coarse, upsampled)."""
    step = (max(grid.dz, 1e-3), grid.pixel, grid.pixel)
    coarse = [max(2, int(np.ceil(n * s / scale_mm)) + 1) for n, s in zip(shape, step)]
    field = rng.standard_normal(coarse, dtype=np.float32)
    field = ndimage.zoom(field, [n / c for n, c in zip(shape, coarse)], order=1, grid_mode=False)
    field = field[: shape[0], : shape[1], : shape[2]]
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field


def blur_and_noise(hu: np.ndarray, grid: Grid, rng: np.random.Generator, noise_hu: float,
                   psf_mm: float = 0.75) -> np.ndarray:
    """Add white noise, then blur both by the in-plane point spread in one pass: the image gets
    partial-volume edges and the noise a ~1 mm correlation (as after filtered back projection)."""
    sig = max(psf_mm / grid.pixel, 0.5)
    radius = int(3 * sig + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sig) ** 2)
    w /= w.sum()
    gain = float((w ** 2).sum())  # std of 2-D filtered unit white noise
    out = rng.standard_normal(hu.shape, dtype=np.float32)
    out *= noise_hu / gain
    out += hu
    ndimage.gaussian_filter(out, sigma=(0, sig, sig), output=out, truncate=3.0)
    return out
