"""Importer for the RSNA-PE (RSPECT) training CSV: one row per image with ``pe_present_on_image``.

RSPECT has no labels for lung disease other than PE, so slices without PE get
``negative_label`` (default ``wnl``). That trains stage 1 as "PE-bearing vs not" and gives
stage 2 no ``other`` class; combine with a data set that has other disease for a full cascade.
Images are expected at ``<image_root>/<StudyInstanceUID>/<SeriesInstanceUID>/`` (the
competition layout).
"""
from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path

from PETriageLib.training.manifest import ManifestError, normalize_label, patient_label_of

log = logging.getLogger(__name__)
REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "pe_present_on_image")


def import_rspect(train_csv: "str | Path", image_root: "str | Path", out_dir: "str | Path",
                  negative_label: str = "wnl") -> Path:
    """Write per-series labels CSVs and a manifest.csv under out_dir; returns the manifest path."""
    train_csv, image_root, out_dir = Path(train_csv), Path(image_root), Path(out_dir)
    negative_label = normalize_label(negative_label)
    series: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    with open(train_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{train_csv}: not an RSPECT train.csv, missing columns {', '.join(missing)}")
        for row in reader:
            label = "pe" if row["pe_present_on_image"].strip() in ("1", "1.0") else negative_label
            series[(row["StudyInstanceUID"], row["SeriesInstanceUID"])].append((row["SOPInstanceUID"], label))
    labels_dir = out_dir / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patient_id", "kind", "path", "labels", "patient_label"])
        for (study, uid), rows in sorted(series.items()):
            labels_csv = labels_dir / f"{uid}.csv"
            with open(labels_csv, "w", newline="") as lf:
                lw = csv.writer(lf)
                lw.writerow(["instance_uid", "label"])
                lw.writerows(rows)
            writer.writerow([study, "dicom", str((image_root / study / uid).resolve()), str(labels_csv.resolve()),
                             patient_label_of([lab for _, lab in rows])])
    log.info("RSPECT: %d series from %s -> %s", len(series), train_csv, manifest)
    return manifest
