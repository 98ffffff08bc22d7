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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))  # the Orthanc and listener harness of the tests

from support.checkpoints import make_checkpoint  # noqa: E402
from support.listener import start_listener, wait_for_echo  # noqa: E402
from support.orthanc import free_port, start_orthanc  # noqa: E402

from PETriageLib.phantom import generate_study, write_study  # noqa: E402

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
        studies = []
        for n in range(args.studies):
            d = write_study(generate_study(100 + n, matrix=args.matrix, slices=args.slices, pe=n % 2 == 0),
                            work / f"study{n}")["series_dir"]
            studies.append(orthanc.upload(sorted(d.glob("*.dcm"))))
        study_ids = [orthanc.request("GET", f"/instances/{ids[0]}/study")["ID"] for ids in studies]
        listener = start_listener(work / "spool", free_port(), orthanc.destination, models,
                                  ["--settle", str(args.settle), "--workers", str(args.workers), "--top-k", "2",
                                   "--domain-check", "off"], work / "listener.log")
        wait_for_echo(orthanc, listener)
        t0 = time.perf_counter()
        for sid in study_ids:
            orthanc.store_to("petriage", [sid], wait=False)
        listener.wait_for("SELECT 1 WHERE (SELECT COUNT(*) FROM series WHERE send_state='sent') = ?",
                          (args.studies,), timeout_s=60 * args.studies, poll_s=0.5)
        seconds = time.perf_counter() - t0
        runs = listener.query("SELECT triage_runs, version, (SELECT COUNT(*) FROM instances i "
                              "WHERE i.series_uid=s.series_uid) FROM series s")
        peak = listener.peak_rss_mb()
        srs = sum(1 for sid in study_ids for s in orthanc.request("GET", f"/studies/{sid}/series")
                  if s["MainDicomTags"].get("Modality") == "SR")
        result = {"studies": args.studies, "slices": args.slices, "matrix": args.matrix, "jobs": args.jobs,
                  "workers": args.workers, "settle_s": args.settle, "seconds": round(seconds, 1),
                  "studies_per_minute": round(args.studies / seconds * 60, 2), "listener_peak_rss_mib": round(peak),
                  "lost": args.studies - len(runs), "triaged_twice": sum(r[0] != 1 or r[1] != 1 for r in runs),
                  "incomplete": sum(r[2] != args.slices for r in runs), "srs_in_orthanc": srs}
        print(json.dumps(result, indent=1))
        ok = result["lost"] == result["triaged_twice"] == result["incomplete"] == 0 and srs == args.studies
        return 0 if ok else 1
    finally:
        if listener is not None:
            listener.stop()
        orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
