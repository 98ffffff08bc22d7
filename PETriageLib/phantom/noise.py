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
                   psf_mm: float = 0.6) -> np.ndarray:
    """Apply the in-plane point spread, then add noise correlated over ~1 mm (like filtered back projection)."""
    sig = psf_mm / grid.pixel
    out = ndimage.gaussian_filter(hu, sigma=(0, sig, sig), truncate=3.0)
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    ns = max(0.9 / grid.pixel, 0.7)
    ndimage.gaussian_filter(noise, sigma=(0, ns, ns), output=noise, truncate=3.0)
    noise *= noise_hu / max(float(noise[: min(4, len(noise))].std()), 1e-6)
    out += noise
    return out
