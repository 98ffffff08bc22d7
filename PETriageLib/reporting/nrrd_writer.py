"""Write a float32 volume as a gzip NRRD one slice at a time.

Why not SimpleITK here: ``GetImageFromArray`` copies the whole array and its NRRD writer
buffers the compressed volume too, which doubles a 600-slice heatmap's memory (about 1.2 GB
per branch at 512 x 512). Heatmaps are zero outside a few slices and ``np.zeros`` pages stay
unallocated until written, so streaming slices keeps the peak at one slice. SimpleITK and
Slicer read the result with the same geometry (tested).

Most slices are all zero, and deflating them was most of the writing time (about 1 s per
300-slice branch). The stream is one ordinary gzip member, cut by full flushes (byte-aligned,
no back-references across them) so that an all-zero slice is the same compressed bytes
wherever it falls: they are made once per slice size and reused, and the CRC skips over
the zeros (an affine map of its state, made once per slice size).
"""
from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


def _vec(values: Sequence[float]) -> str:
    return "(" + ",".join(repr(float(v)) for v in values) + ")"


def write_nrrd_streamed(path: "str | Path", array: np.ndarray, spacing: Sequence[float],
                        origin: Sequence[float], direction: np.ndarray, compresslevel: int = 1) -> Path:
    """``array`` is (k, j, i); geometry in LPS as in ``CTVolume`` (direction columns = i, j, k axes).
    A uint8 array (a mask) is written as uchar, anything else as float32."""
    if array.ndim != 3:
        raise ValueError(f"expected a 3D (k, j, i) array, got shape {array.shape}")
    d = np.asarray(direction, float).reshape(3, 3)
    axes = [d[:, n] * float(spacing[n]) for n in range(3)]
    k, j, i = array.shape
    nrrd_type, dtype = ("uchar", "|u1") if array.dtype == np.uint8 else ("float", "<f4")
    header = "\n".join([
        "NRRD0004",
        f"type: {nrrd_type}",
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
    slice_bytes = i * j * np.dtype(dtype).itemsize
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(_GZIP_HEADER)
        deflate = zlib.compressobj(compresslevel, zlib.DEFLATED, -zlib.MAX_WBITS)
        zero = _zero_slice(slice_bytes, compresslevel)
        after_zeros = _crc_after_zeros(slice_bytes)
        crc = 0
        for s in range(k):  # i runs fastest in C order of (k, j, i), as NRRD expects
            plane = array[s]
            if not plane.any():
                f.write(zero)
                crc = after_zeros(crc)
                continue
            data = np.ascontiguousarray(plane, dtype=dtype).tobytes()
            f.write(deflate.compress(data))
            f.write(deflate.flush(zlib.Z_FULL_FLUSH))  # byte-aligned, nothing refers back past here
            crc = zlib.crc32(data, crc)
        f.write(deflate.flush(zlib.Z_FINISH))
        f.write(struct.pack("<II", crc & 0xFFFFFFFF, (k * slice_bytes) & 0xFFFFFFFF))
    return path


# gzip member header: deflate, no flags, mtime 0 (reproducible files), no extra flags, OS unknown
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@lru_cache(maxsize=8)
def _crc_after_zeros(nbytes: int) -> Callable[[int], int]:
    """``crc -> zlib.crc32(bytes(nbytes), crc)`` without reading the zeros: the CRC update is an
    affine map of the 32-bit state over GF(2), fixed by its value at 0 and at the 32 unit states."""
    zeros = bytes(nbytes)
    base = zlib.crc32(zeros, 0)
    columns = [zlib.crc32(zeros, 1 << b) ^ base for b in range(32)]

    def advance(crc: int) -> int:
        out = base
        for b in range(32):
            if crc >> b & 1:
                out ^= columns[b]
        return out

    return advance


@lru_cache(maxsize=8)
def _zero_slice(nbytes: int, level: int) -> bytes:
    """Raw deflate blocks of ``nbytes`` zeros ending in a full flush: valid anywhere in a stream
    after another full flush, as they refer to nothing before themselves."""
    z = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return z.compress(bytes(nbytes)) + z.flush(zlib.Z_FULL_FLUSH)
