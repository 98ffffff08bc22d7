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
    t0 = time.perf_counter()
    case = load_case(folder, case_id)
    t1 = time.perf_counter()
    studies = render_case(case, 1, ("ctpa", "non_contrast"),
                          RealOptions(pe=True, other_kinds=("ggo", "nodule")))
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_real_studies(studies, tmp)
    t3 = time.perf_counter()
    s = studies["ctpa"]
    print(f"case {case_id}: shape {case.shape} spacing {np.round(case.spacing, 3).tolist()}")
    print(f"load masks {t1 - t0:.1f} s; generate both phases {t2 - t1:.1f} s; write 2 series {t3 - t2:.1f} s; "
          f"total {t3 - t0:.1f} s (CPU {time.process_time():.1f} s)")
    print("findings:", "; ".join(f.describe() for f in s.findings))


if __name__ == "__main__":
    main()
