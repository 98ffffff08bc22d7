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
    tls = p.add_argument_group("TLS (DICOM over TLS; docs/pacs.md, Security)")
    tls.add_argument("--tls-cert", type=Path, metavar="PEM",
                     help="this node's certificate: receive over TLS only (plain TCP is refused)")
    tls.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key (unencrypted PEM)")
    tls.add_argument("--tls-ca", type=Path, metavar="PEM",
                     help="CA certificate(s) that senders' and the destination's certificates must chain to")
    tls.add_argument("--tls-require-client-cert", action="store_true",
                     help="refuse senders without a certificate signed by --tls-ca")
    tls.add_argument("--destination-tls", action="store_true",
                     help="send results over TLS: the destination's certificate is verified against --tls-ca "
                          "(else the system's CAs); --tls-cert is presented as the client certificate")
    add_cascade_options(p)
    p.set_defaults(func=run)


def tls_configs(args: argparse.Namespace) -> "tuple[Any, Any]":
    """(receive, send) TLS configurations from the options; None where TLS is off."""
    from PETriageLib.pacs.tls import TlsConfig, TlsError

    if args.tls_key and not args.tls_cert:
        raise TlsError("--tls-key needs --tls-cert")
    if args.tls_ca and not (args.tls_cert or args.destination_tls):
        raise TlsError("--tls-ca needs --tls-cert (receive over TLS) or --destination-tls (send over TLS)")
    receive = None
    if args.tls_cert or args.tls_require_client_cert:
        receive = TlsConfig(args.tls_cert, args.tls_key, args.tls_ca, args.tls_require_client_cert)
    send = TlsConfig(args.tls_cert, args.tls_key, args.tls_ca) if args.destination_tls else None
    if send is not None and not args.destination:
        raise TlsError("--destination-tls needs --destination")
    return receive, send


def run(args: argparse.Namespace) -> int:
    from PETriageLib.cli.triage import cascade_from_args, screen_options
    from PETriageLib.pacs.listener import Listener, ListenConfig
    from PETriageLib.pacs.scp import ScpConfig
    from PETriageLib.pacs.send import Destination

    receive_tls, send_tls = tls_configs(args)
    config = ListenConfig(
        spool=args.spool, scp=ScpConfig(args.ae_title, args.port, args.bind, tuple(args.allow_ae), receive_tls),
        destination=Destination.parse(args.destination) if args.destination else None, settle_s=args.settle,
        workers=args.workers, retry_base_s=args.retry_base, send_tls=send_tls)
    if config.destination is None:
        log.warning("no --destination: results stay in %s/results", args.spool)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    listener = Listener(config, lambda: cascade_from_args(args), screen_options(args))
    listener.start()
    print(f"petriage listening as {args.ae_title} on {args.bind}:{args.port}{' (TLS)' if receive_tls else ''}; "
          f"spool {args.spool}", flush=True)
    done.wait()
    log.info("stopping: the current triage finishes first")
    listener.close()
    return 0
