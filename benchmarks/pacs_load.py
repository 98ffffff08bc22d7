"""Load of `petriage listen` against a real Orthanc: N phantom studies C-STOREd by Orthanc over J
concurrent associations (Orthanc jobs); prints studies per minute (first instance sent to the
last result stored back in Orthanc), the listener's peak memory, and checks none is lost or
triaged twice. Tiny untrained models by default (the network's speed is benchmarked elsewhere).

Rerun: PYTHONPATH=. .venv/bin/python benchmarks/pacs_load.py --studies 20 --jobs 4
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))  # the Orthanc and listener harness of the tests

from support.checkpoints import make_checkpoint  # noqa: E402
from support.listener import start_listener, wait_for_echo  # noqa: E402
from support.orthanc import free_port, start_orthanc  # noqa: E402
from support.pacs_load import send_and_wait, upload_phantom_studies  # noqa: E402

log = logging.getLogger("pacs_load")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=4, help="concurrent associations (Orthanc jobs)")
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--matrix", type=int, default=128)
    ap.add_argument("--workers", type=int, default=1, help="listener --workers")
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--models", nargs=2, help="stage checkpoints (default: tiny untrained ones)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(tempfile.mkdtemp(prefix="pacs-load-"))
    models = args.models or [make_checkpoint(work / "s1.pt", 1), make_checkpoint(work / "s2.pt", 2)]
    orthanc = start_orthanc(work / "orthanc", jobs=args.jobs)
    listener = None
    try:
        study_ids = upload_phantom_studies(orthanc, work, args.studies, args.matrix, args.slices)
        listener = start_listener(work / "spool", free_port(), orthanc.destination, models,
                                  ["--settle", str(args.settle), "--workers", str(args.workers), "--top-k", "2",
                                   "--domain-check", "off"], work / "listener.log")
        wait_for_echo(orthanc, listener)
        result = send_and_wait(orthanc, listener, study_ids, args.slices, timeout_s=60 * args.studies)
        print(json.dumps({"slices": args.slices, "matrix": args.matrix, "jobs": args.jobs, "workers": args.workers,
                          "settle_s": args.settle, **result.as_dict()}, indent=1))
        return 0 if result.ok else 1
    finally:
        if listener is not None:
            listener.stop()
        orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
