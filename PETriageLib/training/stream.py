"""The streaming data path: slices decoded and preprocessed in DataLoader workers, no slice cache.

For data sets whose float16 slice cache (``cache.py``) does not fit on a disk (RSPECT-size).
Only a small index is kept on disk: each source's slice labels and which slices show lung
(``<index root>/<config hash>/<source hash>.json``, a few bytes per slice), needed before
training to know the slices a stage trains on and their targets. Each training step's slices are
then read again from the DICOM (or volume) files by the workers of a torch DataLoader, each
worker keeping a bounded LRU of decoded series with their lung analysis.

The model inputs equal the cached ones exactly: the same ``prepare_slices`` on the same lung
analysis, rounded to float16 as the cache stores them.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from PETriageLib.atomic import atomic_write
from PETriageLib.training.cache import SliceDataset, _hash, config_dir, source_fingerprint
from PETriageLib.training.manifest import Source

log = logging.getLogger(__name__)
DEFAULT_SERIES_PER_WORKER = 4  # decoded series each worker keeps (a 600-slice 512 px series is ~300 MB as int16)


@dataclass
class StreamedSource:
    """One source's per-slice info without its images (the fields SliceDataset reads of a CachedSource)."""

    patient_id: str
    patient_label: str
    labels: list[str]
    has_lung: np.ndarray
    split: Optional[str] = None
    source: Optional[Source] = None
    masks: None = None  # lesion masks are not streamed (the lesion-map loss needs the cache)


def _decode(source: Source, config):
    """The series and the lung analysis of all its slices, as the cache computes them."""
    from PETriageLib.preprocess.lungs import analyse_lungs
    from PETriageLib.training.loaders import load_source

    volume, labels = load_source(source)
    return volume, labels, analyse_lungs(volume, margin_mm=config.margin_mm)


def _index_entry(source: Source, config) -> dict:
    volume, labels, lungs = _decode(source, config)
    # has_lung as prepare_slices reports it from the same lung analysis, without building the images
    return {"patient_id": source.patient_id, "labels": labels, "has_lung": [bool(lung.has_lung) for lung in lungs],
            "num_slices": volume.num_slices}


class _IndexJobs:
    """Map-style dataset for the index pass: item n decodes one source and writes its entry."""

    def __init__(self, jobs: "list[tuple[Source, Path]]", config) -> None:
        self.jobs, self.config = jobs, config

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, n: int) -> str:
        source, dest = self.jobs[n]
        entry = _index_entry(source, self.config)
        atomic_write(dest, lambda tmp: tmp.write_text(json.dumps(entry)))
        return str(dest)


def _as_is(item):
    return item


def build_index(sources: Sequence[Source], config, root: "str | Path", workers: int = 2,
                rank: int = 0, world_size: int = 1) -> "list[Path]":
    """Index the sources not indexed yet (this rank's share: every ``world_size``-th), decoding them
    in ``workers`` DataLoader workers; returns every source's index file."""
    from torch.utils.data import DataLoader

    base = config_dir(root, config.to_dict())
    base.mkdir(parents=True, exist_ok=True)
    dests = [base / (_hash(source_fingerprint(s)) + ".json") for s in sources]
    todo = [(s, d) for n, (s, d) in enumerate(zip(sources, dests)) if n % world_size == rank and not d.is_file()]
    if todo:
        log.info("indexing %d source(s) for streaming (%d worker(s))", len(todo), workers)
        for _ in DataLoader(_IndexJobs(todo, config), batch_size=None, num_workers=workers, collate_fn=_as_is):
            pass
    return dests


def open_index(sources: Sequence[Source], dests: Sequence[Path]) -> "list[StreamedSource]":
    from PETriageLib.training.manifest import patient_label_of

    out = []
    for source, dest in zip(sources, dests):
        meta = json.loads(Path(dest).read_text())
        out.append(StreamedSource(source.patient_id, source.patient_label or patient_label_of(meta["labels"]),
                                  meta["labels"], np.asarray(meta["has_lung"], bool), source.split, source))
    return out


class SeriesLRU:
    """At most ``size`` decoded series (volume and lung analysis), the least recently used dropped first."""

    def __init__(self, config, size: int = DEFAULT_SERIES_PER_WORKER) -> None:
        if size < 1:
            raise ValueError(f"the series LRU must hold at least 1 series, got {size}")
        self.config, self.size = config, size
        self._items: "OrderedDict[int, tuple]" = OrderedDict()
        self.decoded = 0  # how many times a series was decoded (misses), for the log and the tests

    def get(self, key: int, source: Source):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        volume, _, lungs = _decode(source, self.config)
        self.decoded += 1
        self._items[key] = (volume, lungs)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return volume, lungs


class StreamedSliceDataset(SliceDataset):
    """SliceDataset whose slices are decoded and preprocessed when asked for (see module doc)."""

    def __init__(self, streamed: Sequence[StreamedSource], stage: int, config,
                 series_per_worker: int = DEFAULT_SERIES_PER_WORKER) -> None:
        super().__init__(streamed, stage)  # type: ignore[arg-type]  (same per-slice fields)
        self.config = config
        self.series = SeriesLRU(config, series_per_worker)  # each DataLoader worker gets its own copy

    def __getitem__(self, n: int) -> "tuple[np.ndarray, int]":
        x, y = self.batch([n])
        return x[0], int(y[0])

    def batch(self, indices: Sequence[int]) -> "tuple[np.ndarray, np.ndarray]":
        from PETriageLib.preprocess.slices import prepare_slices

        indices = np.asarray(indices, int)
        xs = np.empty((len(indices), len(self.config.windows) * (2 * self.config.context + 1),
                       self.config.input_size, self.config.input_size), np.float32)
        by_source: "dict[int, list[int]]" = {}
        for j, n in enumerate(indices):
            by_source.setdefault(self.rows[n][0], []).append(j)
        for s, js in by_source.items():  # one decode (or LRU hit) per series of the batch
            volume, lungs = self.series.get(s, self.sources[s].source)
            slices = [self.rows[indices[j]][1] for j in js]
            images = prepare_slices(volume, slices, self.config, lungs=lungs).images
            xs[js] = images.astype(np.float16)  # the cache's precision, so both paths feed the same inputs
        return xs, self.targets[indices]

    def batch_lesion_maps(self, indices: Sequence[int]) -> "tuple[np.ndarray, np.ndarray]":
        raise ValueError("the streaming data path has no lesion masks: train the lesion-map loss from the cache")


class _GroupRows:
    """Sampler of one epoch's micro-batches (arrays of dataset rows), set before each epoch."""

    def __init__(self) -> None:
        self.groups: "list[np.ndarray]" = []

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)


class _GroupFetch:
    def __init__(self, dataset: StreamedSliceDataset) -> None:
        self.dataset = dataset

    def __getitem__(self, rows: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
        return self.dataset.batch(rows)


class StreamLoader:
    """Persistent DataLoader workers that decode and preprocess the micro-batches of an epoch, in
    order, ``prefetch`` micro-batches ahead each. Under torchrun each rank asks only for its rows."""

    def __init__(self, dataset: StreamedSliceDataset, workers: int = 2, prefetch: int = 2) -> None:
        from torch.utils.data import DataLoader

        if workers < 1:
            raise ValueError(f"the streaming data path needs at least 1 DataLoader worker, got {workers}")
        self.sampler = _GroupRows()
        self.loader = DataLoader(_GroupFetch(dataset), sampler=self.sampler, batch_size=None,  # type: ignore[arg-type]
                                 num_workers=workers, persistent_workers=True, prefetch_factor=prefetch,
                                 collate_fn=_as_is)

    def batches(self, groups: "list[np.ndarray]") -> Iterator["tuple[np.ndarray, np.ndarray]"]:
        self.sampler.groups = list(groups)
        return iter(self.loader)


def streamed_splits(manifest: "str | Path", preprocess: dict, index_root: "str | Path",
                    splits_file: "str | Path | None" = None, seed: int = 0,
                    wanted: Sequence[str] = ("train", "val"), ratios: Sequence[float] = (5, 3, 2),
                    extend: bool = False, workers: int = 2) -> "dict[str, list[StreamedSource]]":
    """Like data.cached_splits, but only indexes the sources (those not indexed yet) and opens the index."""
    from PETriageLib.preprocess.slices import PreprocessConfig
    from PETriageLib.training.data import split_sources

    config = PreprocessConfig.from_dict(preprocess)
    return {name: open_index(chosen, build_index(chosen, config, index_root, workers))
            for name, chosen in split_sources(manifest, splits_file, seed, wanted, ratios, extend).items()}


def index_share(manifest: "str | Path", preprocess: dict, index_root: "str | Path", splits_file: "str | Path",
                seed: int, wanted: Sequence[str], rank: int, world_size: int, workers: int = 2) -> None:
    """This torchrun rank's share of the index (every ``world_size``-th source); the splits file
    must exist already (rank 0 makes it)."""
    from PETriageLib.preprocess.slices import PreprocessConfig
    from PETriageLib.training.data import split_sources

    config = PreprocessConfig.from_dict(preprocess)
    chosen = [s for items in split_sources(manifest, splits_file, seed, wanted, (5, 3, 2), False).values()
              for s in items]
    build_index(chosen, config, index_root, workers, rank, world_size)
