"""`petriage` command line: one small module per subcommand, registered here.

Each subcommand module defines ``register(subparsers)`` which adds its parser and sets
``func=run`` with ``run(args) -> int``. Modules must import heavy libraries (torch) lazily,
inside ``run``, so that ``petriage --help`` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from PETriageLib import __version__

# Order here is the order in `petriage --help`, following the data flow.
SUBCOMMANDS = ["info", "phantom", "phantom-realism", "models", "triage", "screen", "demo", "train", "fit-domain", "train-refiner",
               "train-patient", "train-seg", "ship-seg", "segment", "evaluate", "patient-rule", "experiment", "cache", "bench", "listen", "queue"]

log = logging.getLogger("petriage")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petriage",
        description="Pulmonary embolism triage of chest CT (PETriage).",
    )
    parser.add_argument("--version", action="version", version=f"petriage {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module_name = f"PETriageLib.cli.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name == module_name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:  # a clear one-line message; the traceback with -vv
        if args.verbose > 1:
            raise
        log.error("%s: %s", type(exc).__name__, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
