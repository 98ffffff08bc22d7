"""What a slice cache folder holds, and pruning it to a size or an age.

A cache root (the ``--cache`` of train, evaluate, train-refiner and train-patient) holds one
folder per preprocessing config with one entry per source (see ``cache``) and, where
evaluation or the series models kept them, ``patient-features/*.npz``. Everything in it can
be rebuilt from the sources by the next run that needs it, so pruning only costs time.

``cache_sources`` and ``split_series`` touch what they read, so the least recently used goes
first. Entries a live process is writing are never removed; temporary folders left by
processes that died are always removed. Nothing outside this layout is touched, so a wrong
path cannot delete a user's files.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

_HASH = re.compile(r"^[0-9a-f]{16}$")
_TEMP = re.compile(r"^([0-9a-f]{16})\.tmp(\d+)$")
_FEATURES = re.compile(r"^\w+-(scores|embeddings|multiscale)-[0-9a-f]{12}\.npz$")  # patient.pipeline.features_path
FEATURES_DIR = "patient-features"


@dataclass
class CacheItem:
    """One removable thing in a cache root."""

    path: Path
    kind: str  # "slices" (one source's preprocessed slices), "features" (a split's series features), "unfinished"
    size: int  # bytes on disk
    last_used: float  # seconds since the epoch
    config: str = ""  # the preprocessing config folder (slices and unfinished entries)
    label: str = ""  # patient id (slices) or file name (features)
    live: bool = False  # an unfinished entry whose writer is still running


def parse_size(text: str) -> int:
    """'500M', '20G', '1.5T' or a number of bytes -> bytes: decimal units (as `df -H` prints),
    binary ones with an i ('20GiB', as `df -h` and `du -h` print)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:([KMGT])(I?))?B?\s*", text.upper())
    if not m:
        raise ValueError(f"size {text!r}: give a number with an optional unit K, M, G or T (e.g. 20G)")
    unit, binary = m.group(2) or "", bool(m.group(3))
    power = "KMGT".index(unit) + 1 if unit else 0
    return int(float(m.group(1)) * (1024 if binary else 1000) ** power)


def format_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def touch(path: "str | Path") -> None:
    """Mark a cache entry as just used; a read-only shared cache is left as it is."""
    try:
        os.utime(path)
    except OSError:
        pass


LOW_DISK_BYTES = 5 * 1000**3


def warn_if_disk_low(root: "str | Path", low: int = LOW_DISK_BYTES) -> bool:
    """Log a warning (with the way out) when the disk of cache ``root`` has less than ``low`` bytes free."""
    free = shutil.disk_usage(root).free
    if free >= low:
        return False
    log.warning("only %s free on the disk of the slice cache %s: a full disk fails training half-way; "
                "free space with `petriage cache prune %s --max-size SIZE`", format_size(free), root, root)
    return True


def _disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (another user's counts: never touch what it may be writing)."""
    if pid <= 0:  # 0 and negatives address process groups, not a writer
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_writer(path: Path) -> "int | None":
    """The pid named by an entry's temporary folder (``<entry>.tmp<pid>``, see ``cache._build``)."""
    m = _TEMP.match(path.name)
    return int(m.group(2)) if m else None


def _config_items(config: Path) -> list[CacheItem]:
    items = []
    for entry in sorted(config.iterdir()):
        if not entry.is_dir():
            continue
        if _HASH.match(entry.name) and (entry / "meta.json").is_file():
            try:
                patient = json.loads((entry / "meta.json").read_text()).get("patient_id", "")
            except (OSError, ValueError):
                patient = ""
            items.append(CacheItem(entry, "slices", _disk_size(entry), entry.stat().st_mtime, config.name, patient))
        elif (pid := temp_writer(entry)) is not None:
            items.append(CacheItem(entry, "unfinished", _disk_size(entry), entry.stat().st_mtime, config.name,
                                   entry.name.split(".")[0], live=pid_alive(pid)))
    return items


def _feature_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and _FEATURES.match(f.name)) if folder.is_dir() else []


def is_cache_root(root: "str | Path") -> bool:
    """True when the folder has the slice cache's layout (a config folder or kept features), or is a
    ``--features-dir`` of series-model features itself."""
    root = Path(root)
    if not root.is_dir():
        return False
    if (root / FEATURES_DIR).is_dir() or _feature_files(root):
        return True
    return any(_HASH.match(d.name) and (d / "config.json").is_file() for d in root.iterdir() if d.is_dir())


def scan_cache(root: "str | Path") -> list[CacheItem]:
    """Every slice entry, kept feature file and unfinished entry under a cache root."""
    root = Path(root)
    if not is_cache_root(root):
        raise FileNotFoundError(f"{root} is not a PETriage slice cache (no <config>/config.json folder, no "
                                f"{FEATURES_DIR}/, no feature files): give the folder passed as --cache "
                                "(default OUT/cache) or --features-dir")
    items: list[CacheItem] = []
    for config in sorted(root.iterdir()):
        if config.is_dir() and _HASH.match(config.name) and (config / "config.json").is_file():
            items += _config_items(config)
    for f in _feature_files(root / FEATURES_DIR) + _feature_files(root):
        items.append(CacheItem(f, "features", _disk_size(f), f.stat().st_mtime, label=f.name))
    return items


def describe_configs(root: "str | Path", items: list[CacheItem]) -> list[dict]:
    """One row per preprocessing config (and one for kept features): what it is, entries, size, last use."""
    rows = []
    groups: dict[str, list[CacheItem]] = {}
    for item in items:
        groups.setdefault(item.config or FEATURES_DIR, []).append(item)
    for name, group in groups.items():
        row = {"folder": name, "entries": sum(i.kind != "unfinished" for i in group),
               "unfinished": sum(i.kind == "unfinished" for i in group), "bytes": sum(i.size for i in group),
               "last_used": max(i.last_used for i in group)}
        if name != FEATURES_DIR:
            try:
                cfg = json.loads((Path(root) / name / "config.json").read_text())
                row["preprocessing"] = (f"{cfg.get('input_size')} px, {cfg.get('crop')} crop, windows "
                                        f"{'+'.join(w['name'] for w in cfg.get('windows', []))}, "
                                        f"context {cfg.get('context', 0)}")
            except (OSError, ValueError, KeyError, TypeError):
                row["preprocessing"] = "unreadable config.json"
        else:
            row["preprocessing"] = "series-model features"
        rows.append(row)
    return rows


def choose_to_prune(items: list[CacheItem], max_bytes: Optional[int] = None,
                    older_than_s: Optional[float] = None, now: Optional[float] = None) -> list[CacheItem]:
    """What pruning removes: dead unfinished entries; entries unused for ``older_than_s``; then the
    least recently used until the rest fits in ``max_bytes``. Never an entry being written."""
    now = time.time() if now is None else now
    removable = [i for i in items if not i.live]
    chosen = [i for i in removable if i.kind == "unfinished"]
    if older_than_s is not None:
        chosen += [i for i in removable if i.kind != "unfinished" and now - i.last_used > older_than_s]
    if max_bytes is not None:
        gone = {i.path for i in chosen}
        kept = sorted((i for i in removable if i.path not in gone), key=lambda i: i.last_used)
        total = sum(i.size for i in items if i.path not in gone)
        while kept and total > max_bytes:
            oldest = kept.pop(0)
            chosen.append(oldest)
            total -= oldest.size
    return chosen


def prune_cache(root: "str | Path", max_bytes: Optional[int] = None, older_than_s: Optional[float] = None,
                dry_run: bool = False) -> "tuple[list[CacheItem], int]":
    """Remove what ``choose_to_prune`` picks; returns the removed items and the bytes left."""
    items = scan_cache(root)
    chosen = choose_to_prune(items, max_bytes, older_than_s)
    if not dry_run:
        for item in chosen:
            if item.path.is_dir():
                shutil.rmtree(item.path, ignore_errors=True)
            else:
                item.path.unlink(missing_ok=True)
        log.info("removed %d cache entries (%s) from %s", len(chosen), format_size(sum(i.size for i in chosen)), root)
    return chosen, sum(i.size for i in items) - sum(i.size for i in chosen)
