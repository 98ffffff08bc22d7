"""The shipped-model manifest, Resources/models.json: read, verify, resolve, register.

Format: {"models": [{"name", "stage": 1|2, "file" (relative to Resources/), "sha256",
"card": {"intended_use", "training_data", "limits", "metrics"}}], "series_models": [{"name",
"type": "slice_refiner"|"patient_classifier", "file", "sha256", "card"}], "segmentation_models": [{"name",
"task": "segmentation"|"cross_phase", "file", "sha256", "card"}]} (``series_models`` optional: models over a
series' slice features, bound to a stage pair, PETriageLib.training.series_models; ``segmentation_models``
optional: embolus segmentation and non-contrast (CPMN) checkpoints, petriage train-seg).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from PETriageLib.atomic import atomic_write
from PETriageLib.errors import CheckpointError
from PETriageLib.models.checkpoint import file_sha256

MANIFEST_NAME = "models.json"
CARD_KEYS = ("intended_use", "training_data", "limits", "metrics")
ENTRY_KEYS = ("name", "stage", "file", "sha256", "card")
SEG_ENTRY_KEYS = ("name", "task", "file", "sha256", "card")
SEG_TASKS = ("segmentation", "cross_phase")
RESOLVE_KEYS = ("name", "file", "sha256")  # what resolving a name reads of any entry

log = logging.getLogger(__name__)


def resources_dir() -> Path:
    """$PETRIAGE_RESOURCES, else the repository's Resources/ next to the package."""
    env = os.environ.get("PETRIAGE_RESOURCES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "Resources"


def manifest_path(resources: "str | os.PathLike | None" = None) -> Path:
    return Path(resources or resources_dir()) / MANIFEST_NAME


def _check_entry(entry: Any, where: Path) -> None:
    if not isinstance(entry, dict) or any(k not in entry for k in ENTRY_KEYS):
        raise CheckpointError(f"{where}: model entry {entry!r} needs the keys {list(ENTRY_KEYS)}")
    if entry["stage"] not in (1, 2):
        raise CheckpointError(f"{where}: model {entry['name']!r} has stage {entry['stage']!r}, expected 1 or 2")
    _check_card(entry, where)


def _check_card(entry: dict, where: Path) -> None:
    missing = [k for k in CARD_KEYS if k not in entry["card"]]
    if missing:
        raise CheckpointError(f"{where}: model card of {entry['name']!r} lacks {missing}")


def _check_seg_entry(entry: Any, where: Path) -> None:
    if not isinstance(entry, dict) or any(k not in entry for k in SEG_ENTRY_KEYS):
        raise CheckpointError(f"{where}: segmentation model entry {entry!r} needs the keys {list(SEG_ENTRY_KEYS)}")
    if entry["task"] not in SEG_TASKS:
        raise CheckpointError(f"{where}: segmentation model {entry['name']!r} has task {entry['task']!r}, "
                              f"expected one of {', '.join(SEG_TASKS)}")
    _check_card(entry, where)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"model manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CheckpointError(f"model manifest {path} must be an object with a 'models' list")
    return data


def read_manifest(resources: "str | os.PathLike | None" = None) -> dict:
    """The manifest dict (``{"models": []}`` when the file does not exist), structure-checked."""
    path = manifest_path(resources)
    if not path.is_file():
        return {"models": []}
    data = _read_json(path)
    for entry in data["models"]:
        _check_entry(entry, path)
    for entry in data.get("segmentation_models", []):
        _check_seg_entry(entry, path)
    return data


def read_series_models(resources: "str | os.PathLike | None" = None) -> list[dict]:
    """The manifest's optional ``series_models`` entries (refiners, patient classifiers)."""
    path = manifest_path(resources)
    return json.loads(path.read_text(encoding="utf-8")).get("series_models", []) if path.is_file() else []


def verify_manifest(resources: "str | os.PathLike | None" = None) -> list[str]:
    """Problems found (missing files, SHA256 mismatches); an empty list means all is well."""
    root = Path(resources or resources_dir())
    problems = []
    data = read_manifest(root)
    for entry in data["models"] + data.get("series_models", []) + data.get("segmentation_models", []):
        file = root / entry["file"]
        if not file.is_file():
            problems.append(f"{entry['name']}: file {file} is missing")
        elif file_sha256(file) != entry["sha256"]:
            problems.append(f"{entry['name']}: {file} does not match its SHA256 {entry['sha256']}")
    return problems


def resolve_series_model(name_or_path: "str | os.PathLike", resources: "str | os.PathLike | None" = None
                         ) -> tuple[Path, "str | None"]:
    """(file, expected SHA256 or None) of a series model: a file path, or a ``series_models`` name."""
    root = Path(resources or resources_dir())
    return _resolve(name_or_path, read_series_models(root), root, "series model")


def read_segmentation_models(resources: "str | os.PathLike | None" = None, task: "str | None" = None
                             ) -> list[dict]:
    """The manifest's ``segmentation_models`` entries (all, or those of one task), structure-checked."""
    entries = read_manifest(resources).get("segmentation_models", [])
    return [e for e in entries if task is None or e["task"] == task]


def resolve_segmentation_model(name_or_path: "str | os.PathLike", resources: "str | os.PathLike | None" = None
                               ) -> tuple[Path, "str | None"]:
    """(checkpoint path, expected SHA256 or None) of a segmentation or cross-phase model: a
    ``segmentation_models`` name or a file (a registered file gets its entry's SHA256)."""
    root = Path(resources or resources_dir())
    return _resolve(name_or_path, read_segmentation_models(root), root, "segmentation model")


def _resolve(name_or_path: "str | os.PathLike", entries: list[dict], root: Path, what: str
             ) -> tuple[Path, "str | None"]:
    for e in entries:  # series_models are not structure-checked on reading
        missing = [k for k in RESOLVE_KEYS if k not in e] if isinstance(e, dict) else list(RESOLVE_KEYS)
        if missing:
            raise CheckpointError(f"{root / MANIFEST_NAME}: {what} entry {e!r} lacks the keys {missing}")
    candidate = Path(name_or_path)
    if candidate.is_file():
        target = candidate.resolve()
        for e in entries:
            if (root / e["file"]).resolve() == target:
                return candidate, e["sha256"]
        return candidate, None
    for e in entries:
        if e["name"] == str(name_or_path):
            return root / e["file"], e["sha256"]
    known = ", ".join(e["name"] for e in entries) or "none registered"
    raise CheckpointError(f"no checkpoint file or registered {what} named {str(name_or_path)!r} "
                          f"(manifest {root / MANIFEST_NAME}: {known})")


def find_entry(name: str, resources: "str | os.PathLike | None" = None) -> "dict | None":
    return next((e for e in read_manifest(resources)["models"] if e["name"] == name), None)


def resolve_model(name_or_path: "str | os.PathLike", resources: "str | os.PathLike | None" = None
                  ) -> tuple[Path, "str | None"]:
    """(checkpoint path, expected SHA256 or None) for a manifest name or a file path.

    A path that is a manifest entry's file gets that entry's SHA256; any other file gets None.
    """
    root = Path(resources or resources_dir())
    return _resolve(name_or_path, read_manifest(root)["models"], root, "model")


def register_model(name: str, stage: int, checkpoint: "str | os.PathLike", card: Mapping[str, Any],
                   resources: "str | os.PathLike | None" = None) -> dict:
    """Add or replace the manifest entry ``name``; returns it.

    A checkpoint outside Resources/ is copied to Resources/models/<file name> first. The file
    must load (weights-only) so that a broken model is never registered.
    """
    from PETriageLib.models.checkpoint import load_checkpoint

    root = Path(resources or resources_dir())
    src = Path(checkpoint).resolve()
    load_checkpoint(src)  # raises CheckpointError for a file that would be refused later
    entry = {"name": name, "stage": int(stage), "file": _copied_in(src, root), "sha256": file_sha256(src),
             "card": dict(card)}
    _check_entry(entry, manifest_path(root))
    put_entry(root, "models", entry)
    log.info("registered model %s (stage %d) -> %s", name, stage, entry["file"])
    return entry


def register_segmentation_model(name: str, checkpoint: "str | os.PathLike", card: Mapping[str, Any],
                                resources: "str | os.PathLike | None" = None) -> dict:
    """Add or replace the ``segmentation_models`` entry ``name`` (task read from the checkpoint,
    which must load as a segmentation model); copied into Resources/models/<name>.pt when outside."""
    from PETriageLib.models.seg_checkpoint import load_seg_checkpoint

    root = Path(resources or resources_dir())
    src = Path(checkpoint).resolve()
    _, meta = load_seg_checkpoint(src)
    entry = {"name": name, "task": meta["task"], "file": _copied_in(src, root, f"{name}.pt"), "sha256": file_sha256(src),
             "card": dict(card)}
    _check_seg_entry(entry, manifest_path(root))
    put_entry(root, "segmentation_models", entry)
    log.info("registered segmentation model %s (%s) -> %s", name, meta["task"], entry["file"])
    return entry


def _copied_in(src: Path, root: Path, file_name: "str | None" = None) -> str:
    """``src``'s path relative to Resources/, copying it to Resources/models/ (as ``file_name``,
    default its own name) when it lies outside."""
    if not src.is_relative_to(root.resolve()):
        dest = root / "models" / (file_name or src.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        src = dest.resolve()
    return src.relative_to(root.resolve()).as_posix()


def put_entry(root: Path, section: str, entry: dict) -> None:
    """Replace the entry of the same name in ``section`` (keeping its place) or append it."""
    data = read_manifest(root)
    old = data.get(section, [])
    index = next((i for i, e in enumerate(old) if e["name"] == entry["name"]), len(old))
    data[section] = [e for e in old if e["name"] != entry["name"]]
    data[section].insert(index, entry)
    path = manifest_path(root)
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
