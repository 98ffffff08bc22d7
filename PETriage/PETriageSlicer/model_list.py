"""The module's model list: the shipped models (Resources/models.json) plus the user's own
fine-tuned versions, kept in a second manifest of the same format in a user folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from PETriageLib.models.zoo import (
    read_manifest, read_segmentation_models, read_series_models, register_model, resolve_model, resources_dir)
from PETriageLib.errors import CheckpointError


def user_models_dir() -> Path:
    """$PETRIAGE_USER_MODELS, else ~/.petriage (holds models.json and models/*.pt)."""
    return Path(os.environ.get("PETRIAGE_USER_MODELS") or Path.home() / ".petriage")


def available_models(stage: int | None = None) -> list[dict[str, Any]]:
    """Manifest entries of the shipped and the user's models (user ones marked 'user': True)."""
    entries = [dict(e, user=False) for e in read_manifest(resources_dir())["models"]]
    entries += [dict(e, user=True) for e in read_manifest(user_models_dir())["models"]]
    return [e for e in entries if stage is None or e["stage"] == stage]


def model_names(stage: int) -> list[str]:
    return [e["name"] for e in available_models(stage)]


def series_model_names(model_type: str) -> list[str]:
    """Registered names of the shipped series models of one type ('slice_refiner' or
    'patient_classifier'); the panel offers them beside typing a file path."""
    return [e["name"] for e in read_series_models(resources_dir()) if e.get("type") == model_type]


def segmentation_model_names(task: str | None = None) -> list[str]:
    """Registered names of the shipped embolus segmentation models (task 'segmentation' or
    'cross_phase'; None: both, as a CTPA series can take either)."""
    return [e["name"] for e in read_segmentation_models(resources_dir(), task)]


def resolve(name_or_path: str) -> tuple[Path, str | None]:
    """(checkpoint path, expected SHA256) of a user model, a shipped model, or a file path."""
    try:
        return resolve_model(name_or_path, user_models_dir())
    except CheckpointError:
        return resolve_model(name_or_path, resources_dir())


def verified_path(name_or_path: str) -> Path:
    """The checkpoint file of a model name or path, its SHA256 checked where the manifest gives one."""
    from PETriageLib.models.checkpoint import file_sha256

    path, expected = resolve(name_or_path)
    if expected is not None and file_sha256(path) != expected:
        raise CheckpointError(f"{path}: SHA256 does not match the model list entry {name_or_path!r}; "
                              "the file was changed or damaged")
    return path


def register_user_model(name: str, stage: int, checkpoint: "str | Path", card: Mapping[str, Any]) -> dict:
    """Copy a (fine-tuned) checkpoint into the user's folder and list it under ``name``."""
    folder = user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return register_model(name, stage, checkpoint, card, resources=folder)
