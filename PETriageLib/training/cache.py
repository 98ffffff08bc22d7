"""Preprocessed slices cached on disk as .npy memmaps, keyed by the preprocessing config.

Layout: ``<root>/<config hash>/<source hash>/{images.npy, meta.json}``, plus ``masks.npy``
(lesion fractions in model space, see ``lesion_masks``) for sources with a lesion mask, built
when a run asks for masks. The first epoch
reads DICOM once per source; later epochs, runs and experiments sharing a config read the
float16 memmaps. Entries are written to a temporary folder and renamed, so an interrupted
run never leaves a half-written entry behind.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from PETriageLib.atomic import atomic_write
from PETriageLib.training.cache_admin import pid_alive, temp_writer, touch, warn_if_disk_low
from PETriageLib.training.manifest import Source

log = logging.getLogger(__name__)
CACHE_VERSION = 1


def _hash(obj: object) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def source_fingerprint(source: Source) -> dict:
    """What identifies a source's content cheaply: paths, sizes and modification times."""
    files = list(source.paths) + ([source.labels_csv] if source.labels_csv else [])
    stats = []
    for f in files:
        st = os.stat(f)
        stats.append([str(Path(f).resolve()), st.st_size, int(st.st_mtime)])
    return {"patient": source.patient_id, "kind": source.kind, "files": stats, "labels": source.image_labels}


@dataclass
class CachedSource:
    """One source's slices: images (N, C, S, S) float16 memmap and per-slice info."""

    patient_id: str
    patient_label: str
    images: np.ndarray
    labels: list[str]
    has_lung: np.ndarray
    split: Optional[str] = None
    masks: Optional[np.ndarray] = None  # (N, 2, S, S) uint8 lesion fractions, when asked for and available
    source: Optional[Source] = None  # where the slices came from


def config_dir(root: "str | Path", config_dict: dict) -> Path:
    return Path(root) / _hash({"v": CACHE_VERSION, "preprocess": config_dict})


def _being_built(dest: Path) -> bool:
    """True while another running process writes this entry (its temporary folder names its pid)."""
    for tmp in dest.parent.glob(dest.name + ".tmp*"):
        pid = temp_writer(tmp)
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            return True
    return False


def _prepare(source: Source, config):
    from PETriageLib.preprocess.lungs import analyse_lungs
    from PETriageLib.preprocess.slices import prepare_slices
    from PETriageLib.training.loaders import load_source

    volume, labels = load_source(source)
    lungs = analyse_lungs(volume, margin_mm=config.margin_mm)
    return volume, labels, prepare_slices(volume, list(range(volume.num_slices)), config, lungs=lungs)


def _save_masks(source: Source, volume, prepared, path: Path) -> None:
    from PETriageLib.training.lesion_masks import lesion_fractions, read_lesion_mask

    assert source.mask is not None
    np.save(path, lesion_fractions(read_lesion_mask(source.mask, volume), prepared.crops))


def _add_masks(source: Source, config, dest: Path) -> None:
    """masks.npy for an entry cached before masks were asked for (re-reads the series for its crops)."""
    volume, _, prepared = _prepare(source, config)
    atomic_write(dest / "masks.npy", lambda tmp: _save_masks(source, volume, prepared, tmp), suffix=".npy")


def _build(source: Source, config, dest: Path, with_masks: bool = False) -> None:
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)  # claims the entry before the slow part, so a parallel run skips it
    volume, labels, prepared = _prepare(source, config)
    np.save(tmp / "images.npy", np.asarray(prepared.images, np.float16))
    if with_masks and source.mask is not None:
        _save_masks(source, volume, prepared, tmp / "masks.npy")
    meta = {"patient_id": source.patient_id, "labels": labels,
            "has_lung": [bool(b) for b in prepared.has_lung], "source": [str(p) for p in source.paths[:1]],
            "num_slices": volume.num_slices}
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(tmp, dest)
    except OSError:  # another process (e.g. the other stage training in parallel) cached it first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / "meta.json").is_file():
            raise


def build_missing(sources: Sequence[Source], config, root: "str | Path", with_masks: bool = False,
                  rank: int = 0, world_size: int = 1) -> "list[Path]":
    """Cache the sources not cached yet; returns every source's entry folder.

    With ``world_size`` > 1 (torchrun ranks) this process builds only the sources whose position
    is ``rank`` modulo ``world_size``: the ranks share the work and no entry has two writers.
    """
    base = config_dir(root, config.to_dict())
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "config.json").is_file():
        atomic_write(base / "config.json", lambda tmp: tmp.write_text(json.dumps(config.to_dict(), indent=1)))
    dests = [base / _hash(source_fingerprint(s)) for s in sources]
    mine = [(s, d) for n, (s, d) in enumerate(zip(sources, dests)) if n % world_size == rank]
    # Two passes: sources another live process is caching right now are left to it and picked up after.
    built = 0
    for later in (False, True):
        for source, dest in mine:
            if (dest / "meta.json").is_file():
                continue
            if not later and _being_built(dest):
                continue
            while later and _being_built(dest) and not (dest / "meta.json").is_file():
                time.sleep(0.5)
            if not (dest / "meta.json").is_file():
                log.info("caching %s (%s)", source.patient_id, source.paths[0])
                _build(source, config, dest, with_masks)
                built += 1
    for source, dest in mine:
        if with_masks and source.mask is not None and not (dest / "masks.npy").is_file():
            log.info("caching lesion masks of %s (%s)", source.patient_id, source.mask)
            _add_masks(source, config, dest)
    if built:
        warn_if_disk_low(root)
    return dests


def cache_sources(sources: Sequence[Source], config, root: "str | Path",
                  progress: Optional[Callable[[int, int], None]] = None,
                  with_masks: bool = False) -> list[CachedSource]:
    """Preprocess every source once (skipping those already cached) and open them as memmaps.

    ``with_masks``: also cache (and open) the lesion fractions of sources that have a mask.
    """
    from PETriageLib.training.manifest import patient_label_of

    dests = build_missing(sources, config, root, with_masks)
    out = []
    for n, (source, dest) in enumerate(zip(sources, dests)):
        touch(dest)  # last use, for `petriage cache prune`
        meta = json.loads((dest / "meta.json").read_text())
        masks = None
        if with_masks and source.mask is not None:
            masks = np.load(dest / "masks.npy", mmap_mode="r")
        out.append(CachedSource(
            patient_id=source.patient_id,
            patient_label=source.patient_label or patient_label_of(meta["labels"]),
            images=np.load(dest / "images.npy", mmap_mode="r"),
            labels=meta["labels"], has_lung=np.asarray(meta["has_lung"], bool), split=source.split, masks=masks,
            source=source))
        if progress:
            progress(n + 1, len(sources))
    return out




def stage_targets(labels: Sequence[str], has_lung: np.ndarray, stage: int) -> "tuple[np.ndarray, np.ndarray]":
    """Slice indices a stage trains on and their 0/1 targets.

    Stage 1: every slice with lung, target 1 = disease (other or pe).
    Stage 2: slices with lung whose label is a disease, target 1 = pe.
    """
    labels = np.asarray(labels)
    if stage == 1:
        idx = np.flatnonzero(has_lung)
        return idx, (labels[idx] != "wnl").astype(np.int64)
    if stage == 2:
        idx = np.flatnonzero(has_lung & (labels != "wnl"))
        return idx, (labels[idx] == "pe").astype(np.int64)
    raise ValueError(f"stage must be 1 or 2, got {stage}")


class SliceDataset:
    """Slices of some cached sources for one stage; item -> (float32 array (C, S, S), target)."""

    def __init__(self, cached: Sequence[CachedSource], stage: int) -> None:
        self.stage = stage
        self.sources = list(cached)
        rows, targets = [], []
        for s, c in enumerate(self.sources):
            idx, tgt = stage_targets(c.labels, c.has_lung, stage)
            rows.extend((s, int(i)) for i in idx)
            targets.append(tgt)
        self.rows = rows
        self.targets = np.concatenate(targets) if targets else np.zeros(0, np.int64)
        self.patients = [self.sources[s].patient_id for s, _ in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, n: int) -> "tuple[np.ndarray, int]":
        s, i = self.rows[n]
        return np.asarray(self.sources[s].images[i], np.float32), int(self.targets[n])

    def batch(self, indices: Sequence[int]) -> "tuple[np.ndarray, np.ndarray]":
        xs = np.stack([np.asarray(self.sources[self.rows[n][0]].images[self.rows[n][1]], np.float32)
                       for n in indices])
        return xs, self.targets[np.asarray(indices, int)]

    def batch_lesion_maps(self, indices: Sequence[int]) -> "tuple[np.ndarray, np.ndarray]":
        """The stage's lesion maps (N, S, S) in [0, 1] and whether each slice has one (N,) bool."""
        from PETriageLib.training.lesion_masks import stage_lesion_map

        size = self.sources[0].images.shape[-1]
        maps = np.zeros((len(indices), size, size), np.float32)
        has = np.zeros(len(indices), bool)
        for j, n in enumerate(indices):
            s, i = self.rows[n]
            if self.sources[s].masks is not None:
                maps[j] = stage_lesion_map(self.sources[s].masks[i], self.stage)
                has[j] = True
        return maps, has

    def with_masks(self) -> int:
        """How many of the slices have a lesion mask."""
        return sum(1 for s, _ in self.rows if self.sources[s].masks is not None)

    def class_counts(self) -> "list[int]":
        return [int((self.targets == 0).sum()), int((self.targets == 1).sum())]
