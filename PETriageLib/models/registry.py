"""Model registry: build any PETriage model by name; list names with parameter counts and FLOPs."""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from PETriageLib.models.base import SliceClassifier
from PETriageLib.models.cpmn import CPMN
from PETriageLib.models.resunet import ResUnet
from PETriageLib.models.seg_base import DEFAULT_CLASSES
from PETriageLib.models.seg_head import DRNSegNet
from PETriageLib.models.baselines import EfficientNetB5, MultiScaleResNet50, ResNet50
from PETriageLib.models.drn import build_drn
from PETriageLib.models.fusion import WindowFusionNet
from PETriageLib.preprocess.windows import Window

DEFAULT_MODEL = "cbamdrn_d22"
DEFAULT_WINDOWS = ("vascular", "lung")
FAST_CPU_CONFIG = {"width": 0.5}  # the default model's CPU variant


def _drn_fusion(variant: str, attention: str) -> Callable[..., SliceClassifier]:
    def build(name: str, windows: Sequence[str], width: float = 1.0, dropout: float = 0.0,
              pool: str = "avg", context: int = 0) -> SliceClassifier:
        config = {"width": float(width), "dropout": float(dropout), "pool": pool}
        if context:  # written only when used, so configs of models without it stay as they were
            config["context"] = int(context)
        slices = 2 * int(context) + 1
        return WindowFusionNet(name, windows, config, lambda: build_drn(variant, width, slices, attention),
                               dropout, pool)
    return build


def _baseline(cls: type) -> Callable[..., SliceClassifier]:
    default = inspect.signature(cls).parameters["dropout"].default

    def build(name: str, windows: Sequence[str], dropout: float = default) -> SliceClassifier:
        return cls(name, windows, {"dropout": float(dropout)}, dropout)
    return build


# name -> (one-line description, builder(name, windows, **config))
_MODELS: dict[str, tuple[str, Callable[..., SliceClassifier]]] = {
    "cbamdrn_d22": ("DRN-D-22 + CBAM per window branch, FC fusion (default)", _drn_fusion("drn_d22", "cbam")),
    "cbamdrn_d38": ("DRN-D-38 + CBAM per window branch, FC fusion", _drn_fusion("drn_d38", "cbam")),
    "cbamdrn_d54": ("DRN-D-54 + CBAM per window branch, FC fusion", _drn_fusion("drn_d54", "cbam")),
    "fusadrn_d22": ("DRN-D-22 + full scale attention per branch, FC fusion", _drn_fusion("drn_d22", "fusa")),
    "drn_c26": ("DRN-C-26 per window branch, FC fusion", _drn_fusion("drn_c26", "none")),
    "drn_d22": ("DRN-D-22 per window branch, FC fusion", _drn_fusion("drn_d22", "none")),
    "drn_d38": ("DRN-D-38 per window branch, FC fusion", _drn_fusion("drn_d38", "none")),
    "drn_d54": ("DRN-D-54 per window branch, FC fusion", _drn_fusion("drn_d54", "none")),
    "resnet50": ("torchvision ResNet-50, windows as input channels", _baseline(ResNet50)),
    "msresnet50": ("ResNet-50 with stage 3-5 features concatenated", _baseline(MultiScaleResNet50)),
    "efficientnet_b5": ("torchvision EfficientNet-B5, windows as input channels", _baseline(EfficientNetB5)),
}


def _resunet(attention: str) -> Callable[..., SliceClassifier]:
    def build(name: str, windows: Sequence[str], width: float = 1.0,
              classes: Sequence[str] = DEFAULT_CLASSES) -> SliceClassifier:
        return ResUnet(name, windows, width, attention, classes)
    return build


def _drn_seg(variant: str, attention: str) -> Callable[..., SliceClassifier]:
    def build(name: str, windows: Sequence[str], width: float = 1.0, hidden: int = 32) -> SliceClassifier:
        return DRNSegNet(name, windows, variant, attention, width, hidden)
    return build


def _cpmn(name: str, windows: Sequence[str], width: float = 1.0, attention: str = "none") -> SliceClassifier:
    return CPMN(name, windows, width, attention)


# Segmentation and cross-phase models: (N, C, H, W) -> (N, 1, H, W) embolus logits. Kept apart from
# _MODELS so that list_models() and describe_models() still mean the slice classifiers.
TASKS = ("classification", "segmentation", "cross_phase")
_SEG_MODELS: dict[str, tuple[str, str, Callable[..., SliceClassifier]]] = {
    "cbamdrn_d22_seg": ("segmentation", "DRN-D-22 + CBAM per window branch, light decoder to per-pixel PE",
                        _drn_seg("drn_d22", "cbam")),
    "resunet": ("segmentation", "ResUnet: residual encoder blocks, max pooling, U-Net decoder", _resunet("none")),
    "fusa_resunet": ("segmentation", "FUSA-ResUnet: ResUnet with FUSA ending each encoder block",
                     _resunet("fusa")),
    "cpmn": ("cross_phase", "CPMN: CTPA and NCT pathways (ResUnet), IFA/IFD losses; NCT alone at inference",
             _cpmn),
}


def list_models(task: str = "classification") -> list[str]:
    """Registered model names of one task ("classification", "segmentation", "cross_phase" or "all")."""
    if task == "classification":
        return list(_MODELS)
    if task == "all":
        return list(_MODELS) + list(_SEG_MODELS)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)} or 'all'")
    return [n for n, (t, _, _) in _SEG_MODELS.items() if t == task]


def model_task(name: str) -> str:
    """The task a registered model does."""
    _entry(name)
    return _SEG_MODELS[name][0] if name in _SEG_MODELS else "classification"


def model_options(name: str) -> dict[str, Any]:
    """Config keys ``name`` accepts, with their defaults."""
    params = inspect.signature(_entry(name)[1]).parameters
    return {k: p.default for k, p in params.items() if k not in ("name", "windows")}


def _entry(name: str) -> tuple[str, Callable[..., SliceClassifier]]:
    if name in _SEG_MODELS:
        return _SEG_MODELS[name][1:]
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models('all'))}") from None


def window_names(windows: Sequence["str | Window | Mapping"]) -> tuple[str, ...]:
    """Names of windows given as names, Window objects or {"name", "level", "width"} dicts."""
    if isinstance(windows, str):
        windows = (windows,)
    names = []
    for w in windows:
        names.append(w if isinstance(w, str) else w.name if isinstance(w, Window) else str(w["name"]))
    return tuple(names)


def build_model(name: str = DEFAULT_MODEL, windows: Sequence["str | Window | Mapping"] = DEFAULT_WINDOWS,
                **config: Any) -> SliceClassifier:
    """Build a fresh model: input (N, len(windows) * (2 * context + 1), H, W) with H = W >= 64, output
    (N, 1) logits (segmentation and cross-phase models: any H, W >= 16, output (N, 1, H, W) logits) (context: slices each side of the classified one, DRN family only, default 0)."""
    builder = _entry(name)[1]
    unknown = set(config) - set(model_options(name))
    if unknown:
        raise ValueError(f"model {name!r} does not take {sorted(unknown)}; options: {model_options(name)}")
    return builder(name, window_names(windows), **config)


@dataclass
class ModelSummary:
    name: str
    description: str
    config: dict
    params: int
    gflops: float  # forward pass of one slice at input_size (1 multiply-add = 2 FLOPs)
    input_size: int


def summarize(model: SliceClassifier, input_size: int) -> tuple[int, float]:
    """(parameter count, GFLOPs per slice) - FLOPs counted on the meta device, so no real compute."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    meta_model = model.to("meta") if next(model.parameters()).is_meta else _meta_copy(model)
    x = torch.empty(1, model.in_channels, input_size, input_size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model.eval()(x)
    return params, counter.get_total_flops() / 1e9


def _meta_copy(model: SliceClassifier) -> SliceClassifier:
    with torch.device("meta"):
        return build_model(model.name, model.windows, **model.config)


def describe_models(input_size: int = 160, windows: Sequence[str] = DEFAULT_WINDOWS,
                    width: "float | None" = None, names: "Sequence[str] | None" = None) -> list[ModelSummary]:
    """Registered models (all, or ``names``) with parameter counts and FLOPs at ``input_size``.

    ``width`` applies to the models that take one (the DRN family).
    """
    rows = []
    for name in names or list_models():
        description = _entry(name)[0]
        config = {"width": width} if width is not None and "width" in model_options(name) else {}
        with torch.device("meta"):
            model = build_model(name, windows, **config)
        params, gflops = summarize(model, input_size)
        rows.append(ModelSummary(name, description, model.config, params, gflops, input_size))
    return rows


def summary_dicts(rows: Sequence[ModelSummary]) -> list[dict]:
    return [asdict(r) for r in rows]
