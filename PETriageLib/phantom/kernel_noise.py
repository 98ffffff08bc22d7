"""CT noise with a reconstruction kernel's texture, scaled to an amplitude measured on real CT.

White noise filtered in plane: a soft kernel (B30f-like) is a Gaussian low-pass, so neighbouring
pixels are strongly correlated; a sharp kernel (B70f-like) a band-pass (difference of Gaussians)
with a negative lobe, so the grain is fine. The filter's gain is measured on an impulse, so the
output has exactly the requested standard deviation whatever the pixel size.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

KERNELS = {"soft": "B30f", "sharp": "B70f"}


def _filter(plane: np.ndarray, kernel: str, pixel_mm: float) -> np.ndarray:
    if kernel == "soft":
        return ndimage.gaussian_filter(plane, sigma=(0, 0.9 / pixel_mm, 0.9 / pixel_mm), truncate=3.0)
    if kernel == "sharp":
        fine = ndimage.gaussian_filter(plane, sigma=(0, 0.35 / pixel_mm, 0.35 / pixel_mm), truncate=3.0)
        coarse = ndimage.gaussian_filter(plane, sigma=(0, 1.0 / pixel_mm, 1.0 / pixel_mm), truncate=3.0)
        return fine - 0.6 * coarse
    raise ValueError(f"kernel must be one of {tuple(KERNELS)}, got {kernel!r}")


def _gain(kernel: str, pixel_mm: float) -> float:
    impulse = np.zeros((1, 65, 65), np.float32)
    impulse[0, 32, 32] = 1.0
    return float(np.sqrt((_filter(impulse, kernel, pixel_mm) ** 2).sum()))


def kernel_noise(shape: tuple[int, int, int], pixel_mm: float, std_hu: float, kernel: str,
                 rng: np.random.Generator, chunk: int = 32) -> np.ndarray:
    """float32 noise of standard deviation std_hu, textured by `kernel`, independent between slices."""
    gain = _gain(kernel, pixel_mm)
    out = np.empty(shape, np.float32)
    for k in range(0, shape[0], chunk):  # slabs keep the temporary arrays small
        white = rng.standard_normal((min(chunk, shape[0] - k), *shape[1:]), dtype=np.float32)
        out[k:k + chunk] = _filter(white, kernel, pixel_mm) * (std_hu / gain)
    return out


def noise_for_thickness(ref_std: float, ref_thickness_mm: float, thickness_mm: float, kernel: str) -> float:
    """The reference amplitude at another slice thickness (photons add up along z: 1/sqrt(thickness));
    a sharp kernel passes about twice the noise of a soft one."""
    return float(ref_std * np.sqrt(ref_thickness_mm / thickness_mm) * (2.0 if kernel == "sharp" else 1.0))
