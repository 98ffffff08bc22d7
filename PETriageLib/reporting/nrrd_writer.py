"""Write a float32 volume as a gzip NRRD one slice at a time.

Why not SimpleITK here: ``GetImageFromArray`` copies the whole array and its NRRD writer
buffers the compressed volume too, which doubles a 600-slice heatmap's memory (about 1.2 GB
per branch at 512 x 512). Heatmaps are zero outside a few slices and ``np.zeros`` pages stay
unallocated until written, so streaming slices keeps the peak at one slice. SimpleITK and
Slicer read the result with the same geometry (tested).
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Sequence

import numpy as np


def _vec(values: Sequence[float]) -> str:
    return "(" + ",".join(repr(float(v)) for v in values) + ")"


def write_nrrd_streamed(path: "str | Path", array: np.ndarray, spacing: Sequence[float],
                        origin: Sequence[float], direction: np.ndarray, compresslevel: int = 1) -> Path:
    """``array`` is (k, j, i); geometry in LPS as in ``CTVolume`` (direction columns = i, j, k axes)."""
    if array.ndim != 3:
        raise ValueError(f"expected a 3D (k, j, i) array, got shape {array.shape}")
    d = np.asarray(direction, float).reshape(3, 3)
    axes = [d[:, n] * float(spacing[n]) for n in range(3)]
    k, j, i = array.shape
    header = "\n".join([
        "NRRD0004",
        "type: float",
        "dimension: 3",
        "space: left-posterior-superior",
        f"sizes: {i} {j} {k}",
        "space directions: " + " ".join(_vec(a) for a in axes),
        "kinds: domain domain domain",
        "endian: little",
        "encoding: gzip",
        "space origin: " + _vec(origin),
    ]) + "\n\n"
    path = Path(path)
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=compresslevel, mtime=0) as gz:
            for s in range(k):  # i runs fastest in C order of (k, j, i), as NRRD expects
                gz.write(np.ascontiguousarray(array[s], dtype="<f4").tobytes())
    return path
