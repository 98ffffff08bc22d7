"""Voxel grid of a phantom: pixel-centre coordinates in patient-relative mm.

Anatomy is defined in millimetres relative to the body centre (x, y) and the lung base (z),
so a smaller matrix shows the same anatomy with larger pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Axis coordinates (mm, patient-relative, LPS axes) of the pixel centres."""

    x: np.ndarray  # (ni,) columns, +x = patient left
    y: np.ndarray  # (nj,) rows, +y = posterior
    z: np.ndarray  # (nk,) slices, ascending, +z = superior
    thickness: float  # reconstructed slice thickness, mm

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.z), len(self.y), len(self.x))

    @property
    def pixel(self) -> float:
        return float(self.x[1] - self.x[0])

    @property
    def dz(self) -> float:
        return float(self.z[1] - self.z[0]) if len(self.z) > 1 else self.thickness

    def index_range(self, lo: np.ndarray, hi: np.ndarray) -> "tuple[slice, slice, slice] | None":
        """Voxel index slices (k, j, i) covering the mm box [lo, hi] (x, y, z order), or None."""
        out = []
        for axis, (a, b) in zip((self.z, self.y, self.x), ((lo[2], hi[2]), (lo[1], hi[1]), (lo[0], hi[0]))):
            step = axis[1] - axis[0] if len(axis) > 1 else 1.0
            i0 = max(int(np.floor((a - axis[0]) / step)), 0)
            i1 = min(int(np.ceil((b - axis[0]) / step)) + 1, len(axis))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, box: "tuple[slice, slice, slice]") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable (Z, Y, X) coordinate arrays for a voxel box."""
        sk, sj, si = box
        return self.z[sk][:, None, None], self.y[sj][None, :, None], self.x[si][None, None, :]
