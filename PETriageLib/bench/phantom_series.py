"""Generated chest CT series for the benchmarks, written once as DICOM and reused from a cache."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

SEED = 8  # one fixed phantom patient (with PE), so every run times the same anatomy


def bench_series(slices: int, matrix: int, cache_dir: str | Path, seed: int = SEED) -> Path:
    """The DICOM folder of a ``slices`` x ``matrix`` x ``matrix`` phantom, generated if not cached."""
    from PETriageLib.phantom import generate_study, write_study

    root = Path(cache_dir) / f"phantom_seed{seed}_{slices}x{matrix}"
    done = root / "bench_series.json"
    if done.is_file():
        return root / json.loads(done.read_text())["series_dir"]
    t = time.perf_counter()
    study = generate_study(seed, matrix=matrix, slices=slices, pe=True)
    files = write_study(study, root)
    del study
    series_dir = Path(files["series_dir"])
    done.write_text(json.dumps({"series_dir": series_dir.name, "slices": slices, "matrix": matrix, "seed": seed}))
    log.info("generated a %d-slice %d px phantom in %.1f s: %s", slices, matrix, time.perf_counter() - t,
             series_dir)
    return series_dir
