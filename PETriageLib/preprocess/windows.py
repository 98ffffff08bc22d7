"""Named CT display windows (level/width in HU) and their application to HU arrays.

Presets are data: checkpoints store the presets they were trained with (``to_dict``), so a
model never depends on constants in this file staying the same.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

import numpy as np


@dataclass(frozen=True)
class Window:
    name: str
    level: float
    width: float

    @property
    def low(self) -> float:
        return self.level - self.width / 2.0

    @property
    def high(self) -> float:
        return self.level + self.width / 2.0

    def apply(self, hu: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Clip to the window, then scale linearly to [-1, 1] (float32); into ``out`` when given
        (a float32 array of hu's shape, e.g. a channel of a batch: no temporary copy)."""
        if out is None:
            out = np.clip(np.asarray(hu, dtype=np.float32), self.low, self.high)
        else:
            np.clip(np.asarray(hu, dtype=np.float32), self.low, self.high, out=out)
        out -= self.level
        out *= 2.0 / self.width
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Window":
        return cls(name=str(d["name"]), level=float(d["level"]), width=float(d["width"]))


# Seed paper: lung L-400/W1500, mediastinal L40/W400, "vascular" spans -1000..1600 HU.
# RSNA-PE winners: PE window L100/W700 and lung L-600/W1500.
PRESETS: dict[str, Window] = {
    w.name: w
    for w in (
        Window("lung", -400.0, 1500.0),
        Window("mediastinal", 40.0, 400.0),
        Window("vascular", 300.0, 2600.0),
        Window("pe", 100.0, 700.0),
        Window("lung_rsna", -600.0, 1500.0),
    )
}


def get_window(spec: "str | Window | Mapping") -> Window:
    """Resolve a preset name, a Window, or a ``{"name", "level", "width"}`` mapping."""
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, Mapping):
        return Window.from_dict(spec)
    try:
        return PRESETS[spec]
    except KeyError:
        raise ValueError(f"unknown window {spec!r}; known presets: {', '.join(PRESETS)}") from None


def stack_windows(hu: np.ndarray, windows: Iterable["str | Window | Mapping"]) -> np.ndarray:
    """Window one HU image (H, W) or batch (N, H, W) into channels: (C, H, W) or (N, C, H, W)."""
    chans = [get_window(w).apply(hu) for w in windows]
    axis = 0 if np.ndim(hu) == 2 else 1
    return np.stack(chans, axis=axis)
