"""The two cascade models the benchmarks run: the shipped ones when registered, else fresh ones.

Fresh models (random weights, the default architecture) time exactly like trained ones of
the same architecture; only the accuracy comparison then is on random weights, which the
report says.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class BenchModels:
    stage1: str  # manifest name or checkpoint path (what triage.cascade.build_cascade takes)
    stage2: str
    source: str  # "shipped", "given" or "fresh"
    architecture: str
    config: dict
    input_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def given_models(stage1: str, stage2: str, source: str = "given") -> BenchModels:
    """Two manifest names or checkpoint files; described by stage 1's metadata."""
    from PETriageLib.models.checkpoint import load_checkpoint
    from PETriageLib.models.zoo import resolve_model

    _, meta = load_checkpoint(*resolve_model(stage1))
    return BenchModels(str(stage1), str(stage2), source, meta["architecture"], dict(meta.get("config") or {}),
                       int(meta.get("input_size", 160)))


def shipped_models() -> "BenchModels | None":
    """The default models of Resources/models.json, or None when none are registered yet."""
    from PETriageLib.triage.stages import default_models
    from PETriageLib.errors import PETriageError

    try:
        return given_models(*default_models(), source="shipped")
    except (PETriageError, OSError, ValueError) as exc:
        log.info("no shipped models to benchmark (%s); using fresh ones", exc)
        return None


def fresh_models(out_dir: str | Path, architecture: str | None = None, config: dict | None = None,
                 input_size: int = 160, seed: int = 0) -> BenchModels:
    """Save two freshly initialised checkpoints (stage 1 and 2) of the default CPU model."""
    import torch

    from PETriageLib.models import DEFAULT_MODEL, DEFAULT_WINDOWS, FAST_CPU_CONFIG, build_model
    from PETriageLib.vocabulary import STAGE_CLASSES
    from PETriageLib.models.checkpoint import save_checkpoint

    architecture = architecture or DEFAULT_MODEL
    config = dict(FAST_CPU_CONFIG if config is None else config)
    paths = []
    for stage, classes in ((1, list(STAGE_CLASSES[1])), (2, list(STAGE_CLASSES[2]))):
        torch.manual_seed(seed + stage)
        model = build_model(architecture, DEFAULT_WINDOWS, **config).eval()
        path = Path(out_dir) / f"bench_stage{stage}.pt"
        save_checkpoint(path, model, {"windows": list(DEFAULT_WINDOWS), "input_size": input_size,
                                      "class_names": classes, "threshold": 0.5, "crop": "dynamic",
                                      "training": {"note": "random weights, for timing only"}})
        paths.append(str(path))
    return BenchModels(paths[0], paths[1], "fresh", architecture, config, input_size)


def bench_models(out_dir: str | Path, prefer_shipped: bool = True,
                 given: "tuple[str, str] | None" = None) -> BenchModels:
    """``given`` checkpoints, else the shipped models (when preferred and registered), else fresh ones."""
    if given:
        return given_models(*given)
    return (shipped_models() if prefer_shipped else None) or fresh_models(out_dir)
