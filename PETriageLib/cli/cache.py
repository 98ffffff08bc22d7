"""`petriage cache list|prune DIR`: what a training / evaluation slice cache holds, and freeing disk.

The cache has no size limit of its own (a 224 px cache takes about 12 MB per 512 x 512 patient, 35 MB
with one slice of context), so long experiments need pruning: least recently used first.
"""
from __future__ import annotations

import argparse

import time

from PETriageLib.reporting.json_text import to_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cache", help="show or prune a slice cache (the --cache folder of train / evaluate)",
        description="List what a slice cache folder holds (per preprocessing config: entries, size, last use), "
                    "or prune it: unfinished entries of dead runs always, then entries unused for --older-than "
                    "days, then the least recently used until it fits --max-size. Pruned entries are rebuilt "
                    "from their sources by the next run that needs them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("list", help="configs, entries and sizes")
    show.add_argument("root", help="the cache folder (what --cache named; default OUT/cache)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    prune = actions.add_parser("prune", help="remove least recently used entries")
    prune.add_argument("root", help="the cache folder (what --cache named; default OUT/cache)")
    prune.add_argument("--max-size",
                       help="keep at most this much: 20G, 500M (decimal, as df -H) or 20GiB (binary, as du -h)")
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries unused for this many days")
    prune.add_argument("--all", action="store_true", help="remove every entry not being written")
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")
    p.set_defaults(func=run)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _list(args: argparse.Namespace) -> int:
    from PETriageLib.training.cache_admin import describe_configs, format_size, scan_cache

    items = scan_cache(args.root)
    rows = describe_configs(args.root, items)
    if args.json:
        print(to_json({"root": str(args.root), "bytes": sum(i.size for i in items), "configs": rows}, indent=1))
        return 0
    for row in rows:
        extra = f", {row['unfinished']} unfinished" if row["unfinished"] else ""
        print(f"{row['folder']}  {row['preprocessing']}: {row['entries']} entries{extra}, "
              f"{format_size(row['bytes'])}, last used {_when(row['last_used'])}")
    print(f"total {format_size(sum(i.size for i in items))} in {args.root}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from PETriageLib.training.cache_admin import format_size, parse_size, prune_cache

    if args.all and (args.max_size or args.older_than is not None):
        raise ValueError("--all removes everything: give it alone, not with --max-size or --older-than")
    max_bytes = 0 if args.all else (parse_size(args.max_size) if args.max_size else None)
    older = None if args.older_than is None else args.older_than * 86400
    removed, left = prune_cache(args.root, max_bytes, older, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} entries ({format_size(sum(i.size for i in removed))}); "
          f"{format_size(left)} left in {args.root}")
    return 0


def run(args: argparse.Namespace) -> int:
    return _list(args) if args.action == "list" else _prune(args)
