"""Per-slice labels from Pascal-VOC box annotations keyed by SOPInstanceUID (Lung-PET-CT-Dx layout).

Lung-PET-CT-Dx ships one XML file per annotated slice, named ``<SOPInstanceUID>.xml``, with one
``<object><bndbox>`` per tumour. A slice with a box is ``other`` (lung disease that is not PE);
every other slice of the series is ``wnl``. The result is the labels CSV that a data manifest
reads (``instance_uid``, ``file``, ``label`` columns; docs/training.md "Data manifests").
"""
from __future__ import annotations

import csv
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from PETriageLib.training.manifest import ManifestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Box:
    """One tumour box on one slice, in pixels (Pascal-VOC: inclusive corners)."""

    name: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int


@dataclass
class VocLabels:
    """What was written: per-slice labels of one series and the boxes that made them."""

    labels_csv: Path
    labels: dict[str, str]  # SOPInstanceUID -> wnl / other
    boxes: dict[str, list[Box]] = field(default_factory=dict)  # only the series' annotated slices
    unmatched: list[str] = field(default_factory=list)  # annotation UIDs not in this series

    @property
    def n_other(self) -> int:
        return sum(1 for lab in self.labels.values() if lab == "other")


def read_voc_boxes(annotation_dir: "str | Path") -> dict[str, list[Box]]:
    """All boxes of a folder of ``<SOPInstanceUID>.xml`` files, by UID; an unreadable file raises."""
    annotation_dir = Path(annotation_dir)
    files = sorted(annotation_dir.glob("*.xml"))
    if not files:
        raise ManifestError(f"{annotation_dir}: no Pascal-VOC .xml annotations")
    boxes: dict[str, list[Box]] = {}
    for path in files:
        try:
            root = ET.parse(path).getroot()
            found = [Box(obj.findtext("name", "").strip(),
                         *(int(float(obj.find("bndbox").findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")))
                     for obj in root.iter("object")]
        except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: not a Pascal-VOC annotation with bndbox corners ({exc})") from exc
        if found:  # a file without an object marks nothing
            boxes[path.stem] = found
    return boxes


def write_voc_labels(series_dir: "str | Path", annotation_dir: "str | Path", out_csv: "str | Path") -> VocLabels:
    """Write the labels CSV of one DICOM series: boxed slices ``other``, the rest ``wnl``."""
    series_dir, out_csv = Path(series_dir), Path(out_csv)
    boxes = read_voc_boxes(annotation_dir)
    rows: list[tuple[str, str, str]] = []
    for path in sorted(p for p in series_dir.iterdir() if p.is_file()):
        try:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        except Exception as exc:  # not a DICOM file or no UID: a series we cannot label
            raise ManifestError(f"{path}: cannot read its SOPInstanceUID ({exc})") from exc
        rows.append((uid, path.name, "other" if uid in boxes else "wnl"))
    if not rows:
        raise ManifestError(f"{series_dir}: no files")
    uids = {uid for uid, _, _ in rows}
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["instance_uid", "file", "label"])
        writer.writerows(rows)
    result = VocLabels(out_csv, {uid: lab for uid, _, lab in rows},
                       {uid: b for uid, b in boxes.items() if uid in uids},
                       sorted(uid for uid in boxes if uid not in uids))
    log.info("%s: %d slices, %d with a tumour box (%d annotations belong to other series)",
             series_dir, len(rows), result.n_other, len(result.unmatched))
    return result


def main(argv: "list[str] | None" = None) -> None:
    """``python -m PETriageLib.training.voc_slice_labels SERIES_DIR ANNOTATION_DIR OUT_CSV``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series_dir")
    parser.add_argument("annotation_dir")
    parser.add_argument("out_csv")
    args = parser.parse_args(argv)
    result = write_voc_labels(args.series_dir, args.annotation_dir, args.out_csv)
    print(f"{result.labels_csv}: {len(result.labels)} slices, {result.n_other} other")


if __name__ == "__main__":
    main()
