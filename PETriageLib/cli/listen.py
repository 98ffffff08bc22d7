"""`petriage listen --spool DIR`: PETriage as a DICOM node. Receives studies (C-STORE), triages
every complete series with the options of `petriage triage`, and stores the results (SR, key
images, heatmap maps) back to --destination. Runs until interrupted (Ctrl-C or SIGTERM); after a
crash, start it again on the same spool: nothing received is lost.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from PETriageLib.cli.triage import add_cascade_options

log = logging.getLogger("petriage.listen")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("listen", help="run as a DICOM node: receive, triage, send results back",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spool", type=Path, required=True, help="folder for received files, the queue and results")
    p.add_argument("--ae-title", default="PETRIAGE", help="this node's AE title (default PETRIAGE)")
    p.add_argument("--port", type=int, default=11112, help="DICOM port (default 11112)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    p.add_argument("--allow-ae", action="append", default=[], metavar="AET",
                   help="a calling AE title allowed to send (repeat; default: any)")
    p.add_argument("--destination", metavar="AET@HOST:PORT", help="where results are stored (C-STORE)")
    p.add_argument("--settle", type=float, default=30.0,
                   help="seconds without a new instance after which a series is complete (default 30)")
    p.add_argument("--workers", type=int, default=1, help="series triaged at the same time (default 1)")
    p.add_argument("--retry-base", type=float, default=2.0,
                   help="first wait before re-sending results, doubled each try (default 2 s, at most 300 s)")
    add_cascade_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PETriageLib.cli.triage import cascade_from_args, screen_options
    from PETriageLib.pacs.listener import Listener, ListenConfig
    from PETriageLib.pacs.scp import ScpConfig
    from PETriageLib.pacs.send import Destination

    config = ListenConfig(
        spool=args.spool, scp=ScpConfig(args.ae_title, args.port, args.bind, tuple(args.allow_ae)),
        destination=Destination.parse(args.destination) if args.destination else None, settle_s=args.settle,
        workers=args.workers, retry_base_s=args.retry_base)
    if config.destination is None:
        log.warning("no --destination: results stay in %s/results", args.spool)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    listener = Listener(config, lambda: cascade_from_args(args), screen_options(args))
    listener.start()
    print(f"petriage listening as {args.ae_title} on {args.bind}:{args.port}; spool {args.spool}", flush=True)
    done.wait()
    log.info("stopping: the current triage finishes first")
    listener.close()
    return 0
