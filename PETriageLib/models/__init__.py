"""PETriage models: DRN backbones with CBAM/FUSA attention, multi-window fusion, torchvision
baselines, a registry by name, safe checkpoints and the shipped-model manifest."""
from PETriageLib.models.checkpoint import load_checkpoint, save_checkpoint
from PETriageLib.models.zoo import register_model, resolve_model, resources_dir
from PETriageLib.models.registry import (
    DEFAULT_MODEL,
    DEFAULT_WINDOWS,
    FAST_CPU_CONFIG,
    build_model,
    describe_models,
    list_models,
    model_options,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_WINDOWS",
    "FAST_CPU_CONFIG",
    "build_model",
    "describe_models",
    "list_models",
    "load_checkpoint",
    "model_options",
    "register_model",
    "resolve_model",
    "resources_dir",
    "save_checkpoint",
]
