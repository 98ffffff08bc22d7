"""The full ingest fuzz run: damaged series (and mutated copies of the real series when present)
through scan, load and the gate. Prints the counts and every case that was not clean.

    PYTHONPATH=. .venv/bin/python scripts/fuzz_ingest.py --cases 400 --seed 25
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))

from support.fuzz_series import counts, run_cases, sample_cases  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real" / "covid-ct-md-cap002"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=400)
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--real", type=Path, default=REAL, help="real series to mutate (skipped when absent)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cases = sample_cases(args.seed, args.cases, args.real if args.real.is_dir() else None)
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_cases(cases, Path(tmp))
    for o in outcomes:
        if o.kind != "clean":
            print(f"{o.kind:12s} {o.case}: {o.detail}")
    print(" ".join(f"{k}={v}" for k, v in counts(outcomes).items()))
    return 0 if all(o.kind == "clean" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
