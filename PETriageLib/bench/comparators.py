"""The paper's comparators (ResNet-50, EfficientNet-B5) next to CBAMDRN-DWL at the same input size:
parameters and stage-1 slices/s (naive and fast path), with accuracy from the training
experiments' results file when one exists."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from PETriageLib.bench.throughput import path_throughput

log = logging.getLogger(__name__)

# (registry name, config): the default CPU model, its full-width GPU variant, the comparators.
COMPARATORS: tuple[tuple[str, dict], ...] = (
    ("cbamdrn_d22", {"width": 0.5}),
    ("cbamdrn_d22", {"width": 1.0}),
    ("resnet50", {}),
    ("efficientnet_b5", {}),
)
REFERENCE = ("cbamdrn_d22", {"width": 0.5})
RIVAL = ("efficientnet_b5", {})
NAME_KEYS = ("model", "architecture", "name")


def label(name: str, config: dict) -> str:
    return name + "".join(f" {k}={v}" for k, v in sorted(config.items()))


def accuracy_table(path: str | Path | None) -> dict[str, float]:
    """{model name: slice accuracy in [0, 1]} found anywhere in a JSON results file ({} if none)."""
    if not path or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        log.warning("cannot read accuracy results %s: %s", path, exc)
        return {}
    out: dict[str, float] = {}
    for record in _records(data):
        name = next((record[k] for k in NAME_KEYS if isinstance(record.get(k), str)), None)
        acc = _number(record.get("accuracy"))
        if name and acc is not None:
            out.setdefault(name, acc / 100 if acc > 1 else acc)
    return out


def _records(data: Any) -> Iterable[dict]:
    if isinstance(data, dict):
        yield data
        for v in data.values():
            yield from _records(v)
    elif isinstance(data, list):
        for v in data:
            yield from _records(v)


def _number(x: Any) -> "float | None":
    if isinstance(x, dict):
        x = x.get("value", x.get("accuracy"))
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def compare_models(images: np.ndarray, device: str = "cpu", batch: int = 8, repeats: int = 3,
                   min_time_s: float = 1.0, models: Sequence[tuple[str, dict]] = COMPARATORS,
                   accuracy_file: str | Path | None = None) -> dict[str, Any]:
    """One row per model: params, naive and fast slices/s at ``batch``, accuracy when known."""
    import torch

    from PETriageLib.fast_inference import FastPredictor, naive_predictor
    from PETriageLib.models import DEFAULT_WINDOWS, build_model

    accuracy = accuracy_table(accuracy_file)
    rows = []
    for name, config in models:
        torch.manual_seed(0)
        model = build_model(name, DEFAULT_WINDOWS, **config).eval()
        naive = path_throughput(naive_predictor(model, device), images, [batch], repeats, min_time_s)[0]
        fast_pred = FastPredictor(model, device)
        check = fast_pred.validate(images)
        fast = path_throughput(fast_pred, images, [batch], repeats, min_time_s)[0]
        rows.append({"model": label(name, config), "name": name, "config": config,
                     "params": sum(p.numel() for p in model.parameters()),
                     "naive_slices_per_s": naive["slices_per_s"], "fast_slices_per_s": fast["slices_per_s"],
                     "fast_mode": fast_pred.mode, "fast_max_abs_dp": check.max_abs_dp,
                     "accuracy": accuracy.get(name)})
        del model, fast_pred
    return {"input_size": int(images.shape[-1]), "batch": batch, "rows": rows,
            "accuracy_source": str(accuracy_file) if accuracy else None, "ratio": _ratio(rows)}


def _ratio(rows: Sequence[dict]) -> "dict[str, float] | None":
    """CBAMDRN-DWL : EfficientNet-B5 in speed (fast path) and parameters."""
    by = {(r["name"], json.dumps(r["config"], sort_keys=True)): r for r in rows}
    ref = by.get((REFERENCE[0], json.dumps(REFERENCE[1], sort_keys=True)))
    rival = by.get((RIVAL[0], json.dumps(RIVAL[1], sort_keys=True)))
    if not ref or not rival:
        return None
    return {"speed": ref["fast_slices_per_s"] / rival["fast_slices_per_s"],
            "naive_speed": ref["naive_slices_per_s"] / rival["naive_slices_per_s"],
            "params": ref["params"] / rival["params"]}
