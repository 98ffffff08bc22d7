"""Time of loading a report folder's embolus mask into a real MRML scene (PyPI slicer-core): the
segmentation node, the probability volume and the clot-volume check, on a real CT series with a
box-shaped mask written by the library's NRRD writer (the mask is made up; the grid is the scan's).

Rerun: PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/slicer_embolus_load.py \
           ../shared/data/real/covid-ct-md-cap002 --repeat 3
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "PETriage"))

log = logging.getLogger("slicer_embolus_load")


def write_folder(out: Path, series: Path) -> float:
    """A contract report folder with a box clot on the series' own grid; returns its volume in mL."""
    from PETriageLib.ingest.load import load_series
    from PETriageLib.reporting.nrrd_writer import write_nrrd_streamed

    vol = load_series(series)
    mask = np.zeros(vol.hu.shape, np.float32)
    k = vol.hu.shape[0] // 2
    mask[k - 5:k + 5, 200:230, 180:220] = 1.0
    write_nrrd_streamed(out / "embolus_mask.nrrd", mask, vol.spacing, vol.origin, vol.direction)
    write_nrrd_streamed(out / "embolus_probability.nrrd", mask * 0.9, vol.spacing, vol.origin, vol.direction)
    volume_ml = float(mask.sum()) * float(np.prod(vol.spacing)) / 1000.0
    slices = [int(s) for s in np.flatnonzero(mask.any(axis=(1, 2)))]
    block = {"model": "box", "pathway": "ctpa", "threshold": 0.5, "volume_ml": volume_ml, "max_probability": 0.9,
             "slices": slices, "n_components": 1,
             "files": {"probability": "embolus_probability.nrrd", "mask": "embolus_mask.nrrd"}}
    (out / "report.json").write_text(json.dumps({"embolus": block}))
    return volume_ml


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("series", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from PETriageSlicer.embolus_nodes import add_embolus_nodes
    from PETriageSlicer.loading import load_dicom_folder
    from PETriageSlicer.scene import new_scene

    new_scene()
    ct = load_dicom_folder(args.series)
    with tempfile.TemporaryDirectory() as tmp:
        expected = write_folder(Path(tmp), args.series)
        seconds = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            found = add_embolus_nodes(ct, tmp)
            seconds.append(time.perf_counter() - t)
            assert abs(found.volume_ml - expected) <= 1e-6 * expected
            sh = ct.GetScene().GetSubjectHierarchyNode()  # no results table: the nodes have a folder of their own
            sh.RemoveItem(sh.GetItemParent(sh.GetItemByDataNode(found.segmentation)), True, True)
    dims = ct.GetImageData().GetDimensions()
    print(f"{args.series.name}: {dims[0]}x{dims[1]}x{dims[2]} voxels, clot {expected:.3f} mL; "
          f"add_embolus_nodes median {statistics.median(seconds):.2f} s over {len(seconds)} runs "
          f"(min {min(seconds):.2f}, max {max(seconds):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
