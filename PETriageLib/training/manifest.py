"""Data manifests: which images to train on, with which labels, for which patient.

A manifest is a CSV (or the phantom's dataset ``manifest.csv``, read as is). Our own columns:

``patient_id``   always required; splits are made by it
``kind``         ``dicom`` (a series folder), ``volume`` (NRRD/NIfTI file) or ``image`` (PNG/JPEG slice)
``path``         the folder or file, relative to the manifest
``labels``       dicom/volume: a per-slice labels CSV; image: the slice's label word
``patient_label`` optional (else derived from the slices: pe > other > wnl)
``split``        optional fixed split (train/val/test)
``mask``         optional, dicom/volume: a lesion label volume on the series' grid (1 = PE, other
                 non-zero = other disease) for the auxiliary lesion-map loss (``--mask-loss``)
``contrast``     optional, dicom/volume: ``ctpa`` or ``none`` (the series' phase); a patient with one
                 series of each is a CTPA / non-contrast pair for cross-phase training (CPMN)

Per-slice labels CSV: a ``label`` column (wnl/other/pe) or a binary ``infection`` column
(1 = other disease), matched to slices by ``instance_uid``, ``file`` (file name) or
``slice_index`` (0-based, ascending z), whichever the CSV has, in that order.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from PETriageLib.vocabulary import SLICE_LABELS
from PETriageLib.errors import PETriageError

log = logging.getLogger(__name__)
ALIASES = {"normal": "wnl", "negative": "wnl", "healthy": "wnl", "disease": "other", "pneumonia": "other",
           "covid": "other", "covid-19": "other", "cap": "other", "embolism": "pe"}
KINDS = ("dicom", "volume", "image")
CONTRAST_WORDS = {"ctpa": "ctpa", "contrast": "ctpa", "arterial": "ctpa", "yes": "ctpa", "true": "ctpa", "1": "ctpa",
                  "none": "none", "nct": "none", "non-contrast": "none", "noncontrast": "none", "native": "none",
                  "no": "none", "false": "none", "0": "none"}


class ManifestError(PETriageError, ValueError):
    """A manifest or labels file cannot be read; the message names the file and row."""


@dataclass
class Source:
    """One cacheable unit: a DICOM series, a volume, or all image slices of one patient."""

    patient_id: str
    kind: str
    paths: list[Path]
    labels_csv: Optional[Path] = None
    image_labels: list[str] = field(default_factory=list)  # kind == "image": one per path
    patient_label: Optional[str] = None
    split: Optional[str] = None
    mask: Optional[Path] = None  # lesion label volume (dicom/volume sources), for the lesion-map loss
    contrast: Optional[str] = None  # "ctpa" or "none" where the manifest says (its contrast column)

    @property
    def key(self) -> str:
        return f"{self.patient_id}:{self.kind}:{self.paths[0]}"


def normalize_label(value: str, where: str = "") -> str:
    word = str(value).strip().lower()
    word = ALIASES.get(word, word)
    if word not in SLICE_LABELS:
        raise ManifestError(f"{where}unknown label {value!r}; use one of {', '.join(SLICE_LABELS)} "
                            f"(or {', '.join(ALIASES)})")
    return word


def contrast_of(row: dict, where: str) -> Optional[str]:
    """The row's ``contrast`` word as "ctpa" or "none", or None where the column is absent or empty."""
    word = (row.get("contrast") or "").strip().lower()
    if not word:
        return None
    if word not in CONTRAST_WORDS:
        raise ManifestError(f"{where}contrast must be ctpa or none (or {', '.join(CONTRAST_WORDS)}), got {word!r}")
    return CONTRAST_WORDS[word]


def patient_label_of(slice_labels: list[str]) -> str:
    """pe if any slice shows PE, else other if any is diseased, else wnl."""
    for lab in ("pe", "other"):
        if lab in slice_labels:
            return lab
    return "wnl"


def _read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as fh:
            return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(fh)]
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc


def manifest_paths(path: "str | Path | Sequence[str | Path]") -> list[str]:
    """One manifest or several, as a list of path strings (for reports and model cards)."""
    return [str(p) for p in ([path] if isinstance(path, (str, Path)) else path)]


def load_manifest(path: "str | Path | Sequence[str | Path]") -> list[Source]:
    """Read our manifest CSV or a phantom dataset manifest.csv into Sources (paths made absolute).

    Several manifests (a list) are read one after the other into one list of sources.
    """
    if not isinstance(path, (str, Path)):
        return [s for one in manifest_paths(path) for s in load_manifest(one)]
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise ManifestError(f"{path}: manifest has no rows")
    base = path.parent
    if "patient_id" not in rows[0]:
        raise ManifestError(f"{path}: missing required column patient_id (columns: {', '.join(rows[0])})")
    phantom = "series_dir" in rows[0]
    sources: list[Source] = []
    images: dict[str, Source] = {}
    for n, row in enumerate(rows, start=2):
        where = f"{path}:{n}: "
        pid = row["patient_id"]
        if not pid:
            raise ManifestError(f"{where}empty patient_id")
        plabel = normalize_label(row["patient_label"], where) if row.get("patient_label") else None
        split = row.get("split") or None
        if phantom:
            mask = base / row["mask"] if row.get("mask") else None
            sources.append(Source(pid, "dicom", [base / row["series_dir"]], base / row["labels_csv"], [], plabel, split,
                                  mask, contrast_of(row, where)))
            continue
        kind = row.get("kind", "").lower()
        if kind not in KINDS:
            raise ManifestError(f"{where}kind must be one of {', '.join(KINDS)}, got {kind!r}")
        target = base / row.get("path", "")
        if not row.get("path") or not target.exists():
            raise ManifestError(f"{where}path {target} does not exist")
        if kind == "image":
            src = images.get(pid)
            if src is None:
                src = images[pid] = Source(pid, "image", [], None, [], plabel, split)
                sources.append(src)
            src.paths.append(target)
            src.image_labels.append(normalize_label(row.get("labels", ""), where))
        else:
            labels = base / row.get("labels", "")
            if not row.get("labels") or not labels.is_file():
                raise ManifestError(f"{where}labels CSV {labels} does not exist")
            mask = base / row["mask"] if row.get("mask") else None
            if mask is not None and not mask.is_file():
                raise ManifestError(f"{where}mask {mask} does not exist")
            sources.append(Source(pid, kind, [target], labels, [], plabel, split, mask, contrast_of(row, where)))
    log.info("manifest %s: %d sources, %d patients", path, len(sources), len({s.patient_id for s in sources}))
    return sources


def read_slice_labels(labels_csv: Path, instance_uids: list[str], file_names: list[str]) -> list[str]:
    """Labels for each slice of a series (ascending z), matched by instance UID, file name or index."""
    rows = _read_rows(labels_csv)
    if not rows:
        raise ManifestError(f"{labels_csv}: no rows")
    cols = rows[0].keys()

    def label(row: dict, n: int) -> str:
        if "label" in row:
            return normalize_label(row["label"], f"{labels_csv}:{n}: ")
        if "infection" in row:
            return "other" if row["infection"] in ("1", "1.0", "true", "True") else "wnl"
        raise ManifestError(f"{labels_csv}: needs a 'label' or 'infection' column (has {', '.join(cols)})")

    num = len(instance_uids)
    if "instance_uid" in cols and all(r["instance_uid"] for r in rows) and any(instance_uids):
        lookup = {r["instance_uid"]: label(r, n) for n, r in enumerate(rows, start=2)}
        keys, what = instance_uids, "instance_uid"
    elif "file" in cols:
        lookup = {Path(r["file"]).name: label(r, n) for n, r in enumerate(rows, start=2)}
        keys, what = [Path(f).name for f in file_names], "file"
    elif "slice_index" in cols:
        lookup = {int(r["slice_index"]): label(r, n) for n, r in enumerate(rows, start=2)}
        keys, what = list(range(num)), "slice_index"
    else:
        raise ManifestError(f"{labels_csv}: needs an instance_uid, file or slice_index column")
    missing = [k for k in keys if k not in lookup]
    if missing:
        raise ManifestError(f"{labels_csv}: {len(missing)} of {num} slices have no label by {what} "
                            f"(first: {missing[0]})")
    return [lookup[k] for k in keys]
