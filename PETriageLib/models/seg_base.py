"""What every segmentation model shares: window channels in, per-pixel lesion logits out.

A ``SegmentationNet`` is a ``SliceClassifier`` as far as the registry and checkpoints go (name,
windows, rebuildable config, input checks), so ``save_checkpoint`` / ``load_checkpoint`` keep their
digest and strict-load checks; only its output differs: (N, K, H, W) logits at the input size, one
channel per lesion class of ``classes`` (default: the embolus alone, K = 1), the embolus first.
Each channel is its own sigmoid, not a softmax over the classes.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from PETriageLib.models.base import SliceClassifier
from PETriageLib.vocabulary import LESION_CLASSES, LESION_TITLES

SEG_CLASS_NAMES = ["background", "embolus"]
DEFAULT_CLASSES = ("pe",)


def lesion_classes(classes: "Sequence[str] | str") -> tuple[str, ...]:
    """``classes`` checked (a non-empty subset of LESION_CLASSES without repeats) and put in
    LESION_CLASSES order, so that the embolus, where a model has it, is always channel 0 and its
    operating point the checkpoint's ``threshold``."""
    names = (classes,) if isinstance(classes, str) else tuple(str(c) for c in classes)
    unknown = [c for c in names if c not in LESION_CLASSES]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"lesion classes {list(names)}: give one or more of {', '.join(LESION_CLASSES)}, each once")
    return tuple(c for c in LESION_CLASSES if c in names)


class SegmentationNet(SliceClassifier):
    """(N, C, H, W) window channels -> (N, K, H, W) lesion logits (K = len(classes)); any H, W >= ``min_size``."""

    task = "segmentation"
    min_size = 16
    stride = 16  # inputs are padded to a multiple of this and the output cropped back

    def __init__(self, name: str, windows: Sequence[str], config: dict,
                 classes: "Sequence[str]" = DEFAULT_CLASSES) -> None:
        checked = lesion_classes(classes)
        if checked != DEFAULT_CLASSES:  # a one-class embolus model keeps the config it always had
            config = {**config, "classes": list(checked)}
        super().__init__(name, windows, config)
        self.classes = checked

    def channel(self, lesion: str) -> int:
        """The output channel of lesion class ``lesion``; ValueError when the model lacks it."""
        if lesion not in self.classes:
            raise ValueError(f"{self.name} segments {', '.join(LESION_TITLES[c] for c in self.classes)}, "
                             f"not {LESION_TITLES.get(lesion, lesion)}")
        return self.classes.index(lesion)

    def padded(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``x`` padded (replicate) at the bottom/right to a multiple of ``stride``, and its size."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    def branch_layers(self) -> dict:
        return {}
