"""The ``embolus`` block of a report folder's report.json (issue #24's contract), read and checked.

PETriageLib/reporting writes it; the Slicer side only reads it, so a folder written by
``petriage triage`` and one the child process hands back load the same way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PETriageLib.triage.embolus import REPORT_KEYS as REQUIRED_KEYS


@dataclass(frozen=True)
class EmbolusBlock:
    """report.json's ``embolus`` entry, with its file names resolved inside the report folder."""

    model: str
    pathway: str
    threshold: float
    volume_ml: float
    max_probability: float
    slices: list[int]
    n_components: int
    mask_path: Path
    probability_path: Path | None
    extra: dict = field(default_factory=dict)  # keys the contract may gain later, kept as written


def read_embolus_block(report_dir: "str | Path") -> EmbolusBlock | None:
    """The folder's embolus block; None when no segmentation ran (``"embolus": null`` or no key).

    Raises ValueError naming the folder for a report.json that is missing, unreadable, or whose
    block lacks a contract key or points at a mask file that is not there.
    """
    folder = Path(report_dir)
    path = folder / "report.json"
    if not path.is_file():
        raise ValueError(f"{folder}: not a report folder (no report.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from exc
    block = data.get("embolus")
    if block is None:
        return None
    return _block(folder, path, block, "embolus")


def _block(folder: Path, path: Path, block: dict, what: str) -> EmbolusBlock:
    missing = [k for k in REQUIRED_KEYS if k not in block]
    if missing:
        raise ValueError(f"{path}: the {what} block lacks {', '.join(missing)}")
    files = block["files"] or {}
    if not files.get("mask"):
        raise ValueError(f"{path}: the {what} block names no mask file")
    mask = folder / files["mask"]
    if not mask.is_file():
        raise ValueError(f"{path}: the {what} mask {mask.name} is not in the folder")
    probability = folder / files["probability"] if files.get("probability") else None
    if probability is not None and not probability.is_file():
        raise ValueError(f"{path}: the {what} probability {probability.name} is not in the folder")
    return EmbolusBlock(model=str(block["model"]), pathway=str(block["pathway"]), threshold=float(block["threshold"]),
                        volume_ml=float(block["volume_ml"]), max_probability=float(block["max_probability"]),
                        slices=[int(k) for k in block["slices"]], n_components=int(block["n_components"]),
                        mask_path=mask, probability_path=probability,
                        extra={k: v for k, v in block.items() if k not in REQUIRED_KEYS})


def other_lesion_blocks(report_dir: "str | Path", block: EmbolusBlock) -> dict[str, EmbolusBlock]:
    """The blocks of the other lesion classes the same model segmented (``other_lesions`` of the
    embolus block), by class; checked as the embolus block is."""
    folder = Path(report_dir)
    return {lesion: _block(folder, folder / "report.json", entry, f"{lesion} lesion")
            for lesion, entry in (block.extra.get("other_lesions") or {}).items()}


REPORT_SUBFOLDER = "report"  # where the triage child writes the report folder it hands back


def write_embolus_report(result: object, folder: "str | Path") -> Path | None:
    """The report folder of a result whose embolus segmentation ran (``result.embolus``), else None.

    Slicer-free: the triage child calls it and the parent loads the folder, the same folder
    ``petriage triage`` writes. Heatmaps and key images stay out: the scene gets those from the result.
    """
    if getattr(result, "embolus", None) is None:
        return None
    from PETriageLib.reporting.report import write_report

    return write_report(result, folder, heatmaps=None, key_images=False).folder
