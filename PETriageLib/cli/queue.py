"""`petriage queue SPOOL`: what a listener received and did: series received, waiting, being
triaged, done, failed and skipped, each with its reason and the state of its results, then the
ranked worklist of the triaged ones."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("queue", help="show a listener's queue and worklist",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spool", type=Path, help="the spool folder of `petriage listen`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PETriageLib.pacs.series_queue import DB_NAME, STATES, SeriesQueue
    from PETriageLib.triage.worklist import WorklistEntry, rank_worklist

    if not (args.spool / DB_NAME).is_file():
        print(f"{args.spool}: no listener queue here ({DB_NAME} missing)")
        return 2
    queue = SeriesQueue(args.spool)
    rows = queue.series()
    queue.close()
    counts = {s: sum(r.state == s for r in rows) for s in STATES}
    print("  ".join(f"{s} {n}" for s, n in counts.items()))
    for r in rows:
        sent = f", results {r.send_state}" + (f" ({r.send_error})" if r.send_error else "") if r.send_state else ""
        bad = f", {r.skipped_instances} instance(s) skipped" if r.skipped_instances else ""
        print(f"{r.state:9s} {r.modality or '?':3s} {r.instances:4d} inst  v{r.version} {r.series_uid}  "
              f"{r.verdict or ''}{sent}{bad}" + (f"\n          reason: {r.reason}" if r.reason else ""))
    done = [WorklistEntry(verdict=r.verdict, reason=r.reason, series_uid=r.series_uid,
                          series_description=r.description, patient_id=r.patient_id, num_slices=r.num_slices,
                          pe_score=r.pe_score, patient_probability=r.patient_probability,
                          disease_score=r.disease_score, max_pe_slice=r.max_pe_slice, report_dir=r.result_dir or "")
            for r in rows if r.state == "done"]
    if done:
        print("worklist (most urgent first):")
        for e in rank_worklist(done):
            score = "n/a" if e.pe_score is None else f"{e.pe_score:.3f}"
            print(f"{e.rank:3d}. {e.verdict:14s} pe_score {score}  {e.patient_id}  {e.series_description}")
    return 0
