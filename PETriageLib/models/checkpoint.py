"""Checkpoints: one torch.save file with weights and JSON-able metadata, loaded weights-only.

File layout: {"format": "petriage-checkpoint", "format_version": 1, "meta": {...}, "state_dict": {...},
"digest": {"algorithm": "sha256", "value": ...}}, plus an optional "domain" entry (feature statistics
of the training data, PETriageLib.models.domain_stats). ``load_checkpoint`` refuses, with a
CheckpointError naming the file: a SHA256 that differs from the expected one, contents that do not
match the digest stored in the file, anything that needs pickle, another format or package major
version, and metadata that does not rebuild the stored weights exactly (strict load).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import numbers
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from PETriageLib import __version__
from PETriageLib.atomic import atomic_write
from PETriageLib.errors import CheckpointError
from PETriageLib.models.base import SliceClassifier
from PETriageLib.vocabulary import is_probability
from PETriageLib.models.registry import build_model
from PETriageLib.preprocess.windows import get_window

FORMAT = "petriage-checkpoint"
FORMAT_VERSION = 1
REQUIRED_META = ("architecture", "config", "windows", "input_size", "class_names", "threshold")
DIGEST_KEY = "digest"
DIGEST_ALGORITHM = "sha256"

log = logging.getLogger(__name__)


def meta_problem(meta: Mapping[str, Any]) -> str | None:
    """What in a checkpoint's metadata cannot be used (threshold, input size, windows, classes), or None."""
    if not is_probability(meta["threshold"]):
        return f"threshold {meta['threshold']!r} is not a finite number in [0, 1]"
    size = meta["input_size"]
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        return f"input_size {size!r} is not a whole number >= 1"
    windows = meta["windows"]
    if not isinstance(windows, list) or not windows:
        return f"windows {windows!r} is not a list of windows"
    for w in windows:
        try:
            window = get_window(w)
            level, width = float(window.level), float(window.width)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return f"window {w!r} is not known ({exc})"
        if not (math.isfinite(level) and math.isfinite(width) and width > 0):
            return f"window {w!r} needs a finite level and a positive width"
    names = meta["class_names"]
    if not isinstance(names, list) or len(names) != 2 or not all(isinstance(n, str) for n in names):
        return f"class_names {names!r} is not [negative, positive]"
    return None


def file_sha256(path: "str | os.PathLike") -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_meta(model: SliceClassifier, meta: Mapping[str, Any]) -> dict:
    """Complete ``meta`` from the model (architecture, config, window presets) and defaults."""
    out = dict(meta)
    out.setdefault("architecture", model.name)
    out.setdefault("config", dict(model.config))
    windows = out.get("windows") or list(model.windows)
    out["windows"] = [get_window(w).to_dict() for w in windows]
    out.setdefault("crop", "dynamic")
    out.setdefault("threshold", 0.5)
    out.setdefault("training", {})
    out["version"] = __version__
    out.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    missing = [k for k in REQUIRED_META if k not in out]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}")
    if out["architecture"] != model.name or dict(out["config"]) != model.config:
        raise ValueError(f"meta architecture/config {out['architecture']} {out['config']} "
                         f"differ from the model's {model.name} {model.config}")
    if tuple(w["name"] for w in out["windows"]) != model.windows:
        raise ValueError(f"meta windows {[w['name'] for w in out['windows']]} differ from the model's {model.windows}")
    if len(out["class_names"]) != 2:
        raise ValueError(f"class_names must be [negative, positive], got {out['class_names']}")
    try:
        json.dumps(out)
    except TypeError as exc:
        raise ValueError(f"checkpoint meta must be JSON-serialisable: {exc}") from None
    return out


def save_checkpoint(path: "str | os.PathLike", model: SliceClassifier, meta: Mapping[str, Any]) -> Path:
    """Write weights + completed metadata atomically; returns the path. See ``build_meta``."""
    path = Path(path)
    full_meta = build_meta(model, meta)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": full_meta, "state_dict": state}
    write_checkpoint(path, payload)
    log.info("saved checkpoint %s (%s, windows %s)", path, model.name, list(model.windows))
    return path


def _feed(digest: "hashlib._Hash", value: Any) -> None:
    """Feed one value to the digest in a canonical encoding: containers in sorted key order, every
    tensor as dtype, shape and raw bytes, other leaves as JSON (typed, so 1, 1.0, "1" and True differ)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        digest.update(json.dumps(["tensor", str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        keys = sorted(value, key=lambda k: (type(k).__name__, repr(k)))  # state keys are str, optimizer's int
        digest.update(json.dumps(["map", len(keys)]).encode())
        for key in keys:
            digest.update(json.dumps(["key", type(key).__name__, repr(key)]).encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):  # one kind: a JSON round trip turns tuples into lists
        digest.update(json.dumps(["list", len(value)]).encode())
        for item in value:
            _feed(digest, item)
    elif value is None or isinstance(value, (bool, int, float, str)):
        digest.update(json.dumps([type(value).__name__, value]).encode())
    else:
        digest.update(json.dumps([type(value).__name__, repr(value)]).encode())


def content_digest(data: Mapping[str, Any]) -> str:
    """SHA256 of a checkpoint dict's contents (metadata and every tensor), its own digest entry left out.

    Computed over the loaded objects, not the file bytes, so it is the same however torch lays out
    the zip, and a file rewritten with the same contents keeps it."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in data.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def write_checkpoint(path: "str | os.PathLike", data: dict) -> Path:
    """Write a checkpoint dict (as ``read_checkpoint`` returns it) atomically, with the digest of its
    contents stored in it (replacing any older one): a reader never sees half a file, and
    ``check_digest`` finds any later change."""
    payload = {**data, DIGEST_KEY: {"algorithm": DIGEST_ALGORITHM, "value": content_digest(data)}}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def check_digest(data: Mapping[str, Any], path: "str | os.PathLike", registered: bool,
                 what: str = "checkpoint") -> None:
    """Refuse (CheckpointError naming the file) contents that differ from the digest stored in them.

    A file without a digest (shipped weights, files of earlier versions) passes: a ``registered``
    one had its manifest SHA256 checked already, any other gets one logged warning."""
    stored = data.get(DIGEST_KEY)
    if stored is None:
        if not registered:
            log.warning("%s %s carries no digest of its contents (written before PETriage stored one): "
                        "it loads unchecked; register it with its SHA256 or save it again", what, path)
        return
    if not isinstance(stored, Mapping) or stored.get("algorithm") != DIGEST_ALGORITHM:
        raise CheckpointError(f"{what} {path}: its digest entry {stored!r} is not a {DIGEST_ALGORITHM} digest")
    if stored.get("value") != content_digest(data):
        raise CheckpointError(f"{what} {path}: its contents do not match the digest stored in it: "
                              "the file was altered or damaged")


def read_checkpoint(path: "str | os.PathLike", expected_sha256: "str | None" = None,
                    map_location: "str | torch.device" = "cpu") -> dict:
    """The raw checkpoint dict after the SHA256, weights-only and format checks."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if expected_sha256:
        actual = file_sha256(path)
        if actual.lower() != expected_sha256.lower():
            raise CheckpointError(f"checkpoint {path} has SHA256 {actual}, expected {expected_sha256}: "
                                  "the file was changed or is not the registered model")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded weights-only (corrupt, or it needs "
                              f"pickle to run code, which is refused): {first}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a PETriage checkpoint (no format={FORMAT!r} header)")
    check_digest(data, path, registered=bool(expected_sha256))
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format_version {data.get('format_version')!r}; "
                              f"this PETriage reads version {FORMAT_VERSION}")
    meta, state = data.get("meta"), data.get("state_dict")
    if not isinstance(meta, dict) or not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} lacks its meta or state_dict")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path} meta lacks {missing}")
    problem = meta_problem(meta)
    if problem:
        raise CheckpointError(f"checkpoint {path}: its metadata {problem}")
    version = str(meta.get("version", ""))
    if version.split(".")[0] != __version__.split(".")[0]:
        raise CheckpointError(f"checkpoint {path} was written by PETriage {version or '?'}; "
                              f"this is {__version__} (major versions differ)")
    return data


def load_checkpoint(path: "str | os.PathLike", expected_sha256: "str | None" = None,
                    map_location: "str | torch.device" = "cpu") -> tuple[SliceClassifier, dict]:
    """Rebuild the model from the checkpoint's meta and load its weights strictly; eval mode."""
    data = read_checkpoint(path, expected_sha256, map_location)
    return model_from_checkpoint(data, path, map_location), data["meta"]


def model_from_checkpoint(data: dict, path: "str | os.PathLike",
                          map_location: "str | torch.device" = "cpu") -> SliceClassifier:
    """The model of a checkpoint dict from ``read_checkpoint``, weights loaded strictly; eval mode."""
    meta = data["meta"]
    try:
        names = [w["name"] for w in meta["windows"]]
        model = build_model(meta["architecture"], windows=names, **meta["config"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path}: its meta does not describe a known model: {exc}") from None
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise CheckpointError(f"checkpoint {path}: weights do not fit {meta['architecture']} "
                              f"{meta['config']}: {detail}") from None
    model.to(map_location).eval()
    return model
