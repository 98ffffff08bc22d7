"""Time one real-anatomy phantom (both phases) on one core: `python benchmarks/phantom_real.py [CASE] [DIR]`.

Prints the case's shape and the seconds of each step; a benchmark, not a test. The default case 001
is 512 x 512 x 288 (0.73 mm pixels, 1 mm slices).
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # one core, as the issue asks

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from PETriageLib.phantom.real_case import load_case  # noqa: E402
from PETriageLib.phantom.real_study import RealOptions, render_case  # noqa: E402
from PETriageLib.phantom.real_writer import write_real_studies  # noqa: E402


def main() -> None:
    case_id = sys.argv[1] if len(sys.argv) > 1 else "001"
    folder = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1].parent / "shared/data/real/cadpe-vessels"
    t0, c0 = time.perf_counter(), time.process_time()
    case = load_case(folder, case_id)
    t1, c1 = time.perf_counter(), time.process_time()
    studies = render_case(case, 1, ("ctpa", "non_contrast"),
                          RealOptions(pe=True, other_kinds=("ggo", "nodule")))
    t2, c2 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        write_real_studies(studies, tmp)
    t3, c3 = time.perf_counter(), time.process_time()
    s = studies["ctpa"]
    print(f"case {case_id}: shape {case.shape} spacing {np.round(case.spacing, 3).tolist()}")
    for name, wall, cpu in (("load masks", t1 - t0, c1 - c0), ("generate both phases", t2 - t1, c2 - c1),
                            ("write 2 DICOM series + masks", t3 - t2, c3 - c2), ("total", t3 - t0, c3 - c0)):
        print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU")
    print("findings:", "; ".join(f.describe() for f in s.findings))


if __name__ == "__main__":
    main()
