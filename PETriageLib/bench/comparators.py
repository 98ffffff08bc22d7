"""The paper's comparators (ResNet-50, EfficientNet-B5) next to CBAMDRN-DWL at the same input size:
parameters and stage-1 slices/s (naive and fast path), with accuracy from the training
experiments' results file when one exists."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from PETriageLib.bench.throughput import paired_throughput

log = logging.getLogger(__name__)

# (registry name, config) timed next to the benchmarked model: its full-width GPU variant and the
# paper's comparators. The benchmarked model itself is always the first row (the reference).
COMPARATORS: tuple[tuple[str, dict], ...] = (
    ("cbamdrn_d22", {"width": 1.0}),
    ("resnet50", {}),
    ("efficientnet_b5", {}),
)
RIVAL = "efficientnet_b5"
NAME_KEYS = ("model", "architecture", "name")


def label(name: str, config: dict) -> str:
    return name + "".join(f" {k}={v}" for k, v in sorted(config.items()))


def accuracy_table(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """{model name: {"accuracy", "auroc", "variant"}} from a training experiments results.json.

    Reads ``petriage experiment`` records ({"variant": "resnet50-fixed", "stage": 1, "report":
    {"accuracy": {"correct", "total"}, "auroc": {...}}}, stage 1 preferred) and plain records
    ({"model": name, "accuracy": value in [0, 1] or percent}). {} when there is no file.
    """
    if not path or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        log.warning("cannot read accuracy results %s: %s", path, exc)
        return {}
    found = [r for r in (_experiment_row(rec) or _plain_row(rec) for rec in _records(data)) if r]
    out: dict[str, dict[str, Any]] = {}
    for name, row in sorted(found, key=lambda nr: nr[1].get("stage") or 9):  # stage 1 first
        out.setdefault(name, row)
    return out


def _experiment_row(rec: dict) -> "tuple[str, dict] | None":
    report = rec.get("report")
    if not isinstance(rec.get("variant"), str) or not isinstance(report, dict):
        return None
    acc = report.get("accuracy") or {}
    if not acc.get("total"):
        return None
    auroc = (report.get("auroc") or {}).get("auroc")
    return rec["variant"].split("-")[0], {"accuracy": acc["correct"] / acc["total"], "auroc": auroc,
                                          "variant": rec.get("label") or rec["variant"], "stage": rec.get("stage")}


def _plain_row(rec: dict) -> "tuple[str, dict] | None":
    name = next((rec[k] for k in NAME_KEYS if isinstance(rec.get(k), str)), None)
    acc = _number(rec.get("accuracy"))
    if not name or acc is None:
        return None
    return name, {"accuracy": acc / 100 if acc > 1 else acc, "auroc": _number(rec.get("auroc")),
                  "variant": name, "stage": rec.get("stage")}


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
        x = x.get("value", x.get("accuracy", x.get("auroc")))
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def compare_models(images: np.ndarray, reference: tuple[str, dict], device: str = "cpu", batch: int = 8,
                   repeats: int = 3, min_time_s: float = 1.0, models: Sequence[tuple[str, dict]] = COMPARATORS,
                   accuracy_file: str | Path | None = None) -> dict[str, Any]:
    """One row per model (``reference`` first): params, naive and fast slices/s at ``batch``, accuracy
    when known. Weights are random: speed does not depend on them."""
    import torch

    from PETriageLib.models.fast import FastPredictor, naive_predictor
    from PETriageLib.models import DEFAULT_WINDOWS, build_model
    from PETriageLib.preprocess.slices import centre_channels

    accuracy = accuracy_table(accuracy_file)
    rows = []
    todo = [reference] + [m for m in models if label(*m) != label(*reference)]
    for name, config in todo:
        torch.manual_seed(0)
        model = build_model(name, DEFAULT_WINDOWS, **config).eval()
        x = images  # the reference's inputs; a model without its slice context gets their centre slices
        if model.in_channels != images.shape[1]:
            x = centre_channels(images, len(DEFAULT_WINDOWS), int(reference[1].get("context", 0)))
        fast_pred = FastPredictor(model, device)
        check = fast_pred.validate(x)
        timed = paired_throughput({"naive": naive_predictor(model, device), "fast": fast_pred}, x, [batch],
                                  repeats, min_time_s)
        naive, fast = timed["naive"][0], timed["fast"][0]
        rows.append({"model": label(name, config), "name": name, "config": config,
                     "params": sum(p.numel() for p in model.parameters()),
                     "naive_slices_per_s": naive["slices_per_s"], "fast_slices_per_s": fast["slices_per_s"],
                     "fast_mode": fast_pred.mode, "fast_max_abs_dp": check.max_abs_dp,
                     "accuracy": accuracy.get(name)})  # {"accuracy", "auroc", "variant"} or None
        del model, fast_pred
    return {"input_size": int(images.shape[-1]), "batch": batch, "rows": rows,
            "accuracy_source": str(accuracy_file) if accuracy else None, "ratio": _ratio(rows)}


def _ratio(rows: Sequence[dict]) -> "dict[str, float] | None":
    """Reference (first row, CBAMDRN-DWL) : EfficientNet-B5 in speed (fast path) and parameters."""
    rival = next((r for r in rows if r["name"] == RIVAL), None)
    if not rows or rival is None:
        return None
    ref = rows[0]
    return {"reference": ref["model"], "speed": ref["fast_slices_per_s"] / rival["fast_slices_per_s"],
            "naive_speed": ref["naive_slices_per_s"] / rival["naive_slices_per_s"],
            "params": ref["params"] / rival["params"]}
