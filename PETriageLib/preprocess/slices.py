"""Model inputs from a CTVolume: crop each slice (dynamic lung box or fixed), resample the crop to
S x S keeping its aspect ratio (padding with air, -1024 HU), then window into channels.

The crop and resample happen in HU, before windowing, so every window sees the same pixels.
``CropMap`` remembers where model space lies in the slice, to bring heatmaps back.

Slice context (``context`` = c > 0): each window channel becomes 2c + 1 channels, slices k - c ..
k + c through the crop of slice k (so a vessel lines up across them); the first and last slices
repeat at the ends of the series. A small clot in a thick slice looks like a vessel thinned by
partial volume; its neighbours show whether the vessel goes on bright.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import ndimage

from PETriageLib.preprocess.lungs import SliceLung, find_lungs, fixed_box, pixel_spacing_of
from PETriageLib.ingest.volume import AIR_HU, CTVolume
from PETriageLib.preprocess.windows import get_window

CROPS = ("dynamic", "fixed")


@dataclass
class PreprocessConfig:
    """How slices become model inputs; stored in every checkpoint (``to_dict``)."""

    windows: list = field(default_factory=lambda: ["vascular", "lung"])  # preset names or {name, level, width}
    input_size: int = 160
    crop: str = "dynamic"
    margin_mm: float = 10.0
    context: int = 0  # slices each side of the classified one (window-major channels)

    def __post_init__(self) -> None:
        if int(self.context) < 0:
            raise ValueError(f"context must be >= 0 slices, got {self.context}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, not {self.crop!r}")
        if int(self.input_size) < 16:
            raise ValueError(f"input_size {self.input_size} is too small")
        if not self.windows:
            raise ValueError("at least one window is needed")
        for w in self.windows:
            get_window(w)  # fails early with the known presets listed

    def to_dict(self) -> dict[str, Any]:
        """Windows are written out in full (level/width) so a checkpoint never depends on presets.

        ``context`` only when used: the slice caches of earlier configs keep their keys.
        """
        out = {"windows": [get_window(w).to_dict() for w in self.windows], "input_size": int(self.input_size),
               "crop": self.crop, "margin_mm": float(self.margin_mm)}
        if self.context:
            out["context"] = int(self.context)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PreprocessConfig":
        """From ``to_dict`` or a checkpoint's meta (whose model config holds the context)."""
        context = d.get("context", (d.get("config") or {}).get("context", 0))
        return cls(windows=list(d["windows"]), input_size=int(d.get("input_size", 160)),
                   crop=str(d.get("crop", "dynamic")), margin_mm=float(d.get("margin_mm", 10.0)),
                   context=int(context))


@dataclass
class CropMap:
    """Where the S x S model image lies in its slice.

    ``box`` (r0, r1, c0, c1) is the cropped region in slice pixels. Model pixel (u, v) centre maps
    to slice coordinates r = r0 + (u + 0.5 - pad_r) / scale_r - 0.5 (and likewise for c), where
    ``scale_*`` is model pixels per slice pixel and ``pad_*`` the air border in model pixels.
    """

    box: tuple[int, int, int, int]
    slice_shape: tuple[int, int]
    size: int
    scale: tuple[float, float]
    pad: tuple[float, float]

    @classmethod
    def fit(cls, box: Sequence[int], slice_shape: Sequence[int], size: int,
            pixel_spacing: Sequence[float]) -> "CropMap":
        """Fit the box's physical extent into size x size, centred, keeping its aspect ratio."""
        r0, r1, c0, c1 = (int(b) for b in box)
        h_mm, w_mm = (r1 - r0) * float(pixel_spacing[0]), (c1 - c0) * float(pixel_spacing[1])
        per_mm = size / max(h_mm, w_mm)
        scale = (per_mm * float(pixel_spacing[0]), per_mm * float(pixel_spacing[1]))
        pad = ((size - h_mm * per_mm) / 2.0, (size - w_mm * per_mm) / 2.0)
        return cls((r0, r1, c0, c1), (int(slice_shape[0]), int(slice_shape[1])), int(size), scale, pad)

    def to_model(self, hu_slice: np.ndarray, fill: float = float(AIR_HU)) -> np.ndarray:
        """Crop + resample one HU slice to size x size float32; ``fill`` (air) outside the crop.

        Any other per-pixel map (a lesion fraction, fill 0) goes through the same way.
        """
        return self.to_model_stack(np.asarray(hu_slice)[None], fill)[0]

    def to_model_stack(self, hu_slices: np.ndarray, fill: float = float(AIR_HU),
                       out: np.ndarray | None = None) -> np.ndarray:
        """``to_model`` of each slice of a (D, H, W) stack (the context slices of one crop) into
        ``out`` (D, size, size) float32: one crop and one anti-alias filter for the stack (nothing
        is filtered across slices), the same pixels as slice by slice."""
        r0, r1, c0, c1 = self.box
        crop = np.asarray(hu_slices[:, r0:r1, c0:c1], np.float32)
        shrink = (1.0 / self.scale[0], 1.0 / self.scale[1])
        if max(shrink) > 1.25:  # anti-alias before downsampling
            sigma = [0.0] + [max(0.0, (s - 1.0) / 2.0) for s in shrink]
            crop = ndimage.gaussian_filter(crop, sigma=sigma, mode="nearest")
        offset = [(0.5 - p) / s - 0.5 for p, s in zip(self.pad, self.scale)]
        if out is None:
            out = np.empty((len(crop), self.size, self.size), np.float32)
        outside = ~self._inside()
        for d in range(len(crop)):
            ndimage.affine_transform(crop[d], shrink, offset=offset, output_shape=(self.size, self.size),
                                     output=out[d], order=1, mode="nearest")
            out[d][outside] = fill
        return out

    def _inside(self) -> np.ndarray:
        """Model pixels whose centre falls inside the crop."""
        u = np.arange(self.size) + 0.5
        rows = (u >= self.pad[0]) & (u <= self.size - self.pad[0])
        cols = (u >= self.pad[1]) & (u <= self.size - self.pad[1])
        return rows[:, None] & cols[None, :]

    def to_slice(self, map2d: np.ndarray, slice_shape: Sequence[int] | None = None) -> np.ndarray:
        """A model-space map of any resolution (m x m covering size x size) back into the slice.

        Bilinear; float32 of ``slice_shape``; zeros outside the crop box.
        """
        shape = tuple(int(s) for s in (slice_shape or self.slice_shape))
        m = np.asarray(map2d, np.float32)
        r0, r1, c0, c1 = self.box
        out = np.zeros(shape, np.float32)
        if r1 <= r0 or c1 <= c0:
            return out
        # slice pixel centre (r + 0.5) -> model coordinate -> map index (map pixel centres at (i + 0.5) * size / m)
        per = (m.shape[0] / self.size, m.shape[1] / self.size)
        matrix = [self.scale[0] * per[0], self.scale[1] * per[1]]
        offset = [(0.5 * s + p) * q - 0.5 for s, p, q in zip(self.scale, self.pad, per)]
        patch = ndimage.affine_transform(m, matrix, offset=offset, output_shape=(r1 - r0, c1 - c0),
                                         order=1, mode="nearest")
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r1, shape[0]), min(c1, shape[1])
        out[rr0:rr1, cc0:cc1] = patch[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0]
        return out


@dataclass
class PreparedSlices:
    images: np.ndarray  # (N, windows * (2 * context + 1), S, S) float32 in [-1, 1]
    crops: list[CropMap]
    has_lung: np.ndarray  # (N,) bool


def centre_channels(images: np.ndarray, n_windows: int, context: int, keep: int = 0) -> np.ndarray:
    """From inputs with slice context, each window's slices within ``keep`` of the classified one:
    the inputs of a model with less context (keep = 0: none), cropped and resampled the same way."""
    k = 2 * int(context) + 1
    if images.shape[1] != n_windows * k:
        raise ValueError(f"{images.shape[1]} channels are not {n_windows} windows x {k} slices")
    if not 0 <= keep <= context:
        raise ValueError(f"cannot keep {keep} slice(s) each side of inputs with {context}")
    return images[:, [w * k + int(context) + d for w in range(n_windows) for d in range(-keep, keep + 1)]]


def prepare_slices(volume: CTVolume, indices: Sequence[int], config: PreprocessConfig,
                   lungs: Sequence[SliceLung] | None = None) -> PreparedSlices:
    """Model inputs for the given slice indices.

    ``lungs``: ``analyse_lungs(volume)`` for the whole volume (one entry per slice), or None to
    find the lungs of the requested slices here.
    """
    if lungs is not None and len(lungs) != volume.num_slices:
        raise ValueError(f"lungs has {len(lungs)} entries, the volume {volume.num_slices} slices; "
                         "pass analyse_lungs(volume) for the whole volume")
    spacing = pixel_spacing_of(volume)
    shape = volume.hu.shape[1:]
    size = int(config.input_size)
    c, last = int(config.context), volume.num_slices - 1
    hu = np.empty((len(indices), 2 * c + 1, size, size), np.float32)  # crops in HU, context slices together
    crops: list[CropMap] = []
    has_lung = np.zeros(len(indices), bool)
    for n, k in enumerate(indices):
        lung = lungs[k] if lungs is not None else find_lungs(volume.hu[k], spacing, config.margin_mm)
        box = lung.box if config.crop == "dynamic" else fixed_box(shape)
        crop = CropMap.fit(box, shape, size, spacing)
        context = [min(max(j, 0), last) for j in range(k - c, k + c + 1)]
        crop.to_model_stack(volume.hu[context], out=hu[n])
        crops.append(crop)
        has_lung[n] = lung.has_lung
    # windows on the whole batch, window-major channels: each branch gets its window's slices together
    images = np.empty((len(indices), len(config.windows), 2 * c + 1, size, size), np.float32)
    for w, spec in enumerate(config.windows):
        get_window(spec).apply(hu, out=images[:, w])
    return PreparedSlices(images.reshape(len(indices), -1, size, size), crops, has_lung)
