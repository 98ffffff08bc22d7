"""From a manifest to cached, split slice data: the step shared by train, evaluate and experiment."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from PETriageLib.preprocess.slices import PreprocessConfig
from PETriageLib.training.cache import CachedSource, build_missing, cache_sources
from PETriageLib.training.manifest import Source, load_manifest, manifest_paths
from PETriageLib.training.splits import check_disjoint, load_splits, save_splits, split_patients

log = logging.getLogger(__name__)
_RANK = {None: -1, "wnl": 0, "other": 1, "pe": 2}


def patient_labels(sources: Sequence[Source]) -> dict[str, str]:
    """Each patient's label: its worst source (pe > other > wnl), "unknown" when none is given."""
    labels: dict[str, "str | None"] = {}
    for s in sources:
        if _RANK[s.patient_label] >= _RANK[labels.get(s.patient_id)]:
            labels[s.patient_id] = s.patient_label
    return {p: lab or "unknown" for p, lab in labels.items()}


def make_splits(sources: Sequence[Source], splits_file: "str | Path | None" = None,
                ratios: Sequence[float] = (5, 3, 2), seed: int = 0, extend: bool = False,
                strata: "Mapping[str, str] | None" = None) -> dict[str, list[str]]:
    """Splits from a file if it exists, else from the manifest's split column, else seeded 5:3:2,
    stratified by each patient's ``strata`` entry (default: its patient label).

    A splits file that lacks some of the manifest's patients leaves them out, with a warning; with
    ``extend`` (training on added data) they are split by ``ratios`` and added to the file instead,
    so the patients already assigned keep their split.
    """
    if splits_file and Path(splits_file).is_file():
        splits = load_splits(splits_file)
        known = {p for ids in splits.values() for p in ids}
        new = {p: lab for p, lab in (strata or patient_labels(sources)).items() if p not in known}
        if new and extend:
            added = split_patients(new, ratios, seed)
            for name, ids in added.items():
                splits[name] = sorted(splits.get(name, []) + ids)
            save_splits(splits, splits_file)
            log.info("%s: %d new patients added (%s)", splits_file, len(new),
                     ", ".join(f"{name} {len(ids)}" for name, ids in added.items()))
        elif new:
            log.warning("%s has no split for %d of the manifest's patients (e.g. %s): they are left out",
                        splits_file, len(new), sorted(new)[0])
        return splits
    if all(s.split for s in sources):
        splits = {}
        for s in sources:
            if s.patient_id not in splits.get(s.split, []):
                splits.setdefault(s.split, []).append(s.patient_id)
        check_disjoint(splits)
    else:
        splits = split_patients(strata or patient_labels(sources), ratios, seed)
    if splits_file:
        save_splits(splits, splits_file)
    return splits


def cached_splits(manifest: "str | Path", preprocess: dict, cache_root: "str | Path",
                  splits_file: "str | Path | None" = None, seed: int = 0,
                  wanted: Sequence[str] = ("train", "val", "test"),
                  ratios: Sequence[float] = (5, 3, 2), masks_for: Sequence[str] = (),
                  extend: bool = False) -> dict[str, list[CachedSource]]:
    """Load the manifest, split by patient, cache only the wanted splits' sources.

    ``masks_for``: the splits whose lesion masks are cached and opened too (the lesion-map loss).
    ``extend``: add the manifest's patients missing from an existing splits file (see make_splits).
    """
    out: dict[str, list[CachedSource]] = {}
    config = PreprocessConfig.from_dict(preprocess)
    for name, chosen in split_sources(manifest, splits_file, seed, wanted, ratios, extend).items():
        out[name] = cache_sources(chosen, config, cache_root, with_masks=name in masks_for)
    return out


def split_sources(manifest, splits_file, seed: int, wanted: Sequence[str], ratios: Sequence[float],
                  extend: bool) -> "dict[str, list[Source]]":
    """The wanted splits' sources of the manifest (splits as make_splits makes or reads them)."""
    sources = load_manifest(manifest)
    splits = make_splits(sources, splits_file, ratios, seed, extend)
    out = {}
    for name in wanted:
        ids = set(splits.get(name, []))
        out[name] = [s for s in sources if s.patient_id in ids]
        log.info("split %s: %d patients, %d sources", name, len(ids), len(out[name]))
    return out


def build_cache_share(manifest: "str | Path", preprocess: dict, cache_root: "str | Path", splits_file: "str | Path",
                      seed: int, wanted: Sequence[str], masks_for: Sequence[str], rank: int, world_size: int) -> None:
    """This rank's share of the wanted splits' cache entries (every ``world_size``-th source of them
    all, so the work spreads evenly). The splits file must exist already (rank 0 makes it)."""
    config = PreprocessConfig.from_dict(preprocess)
    chosen = split_sources(manifest, splits_file, seed, wanted, (5, 3, 2), extend=False)
    for masks in (False, True):  # sources of splits with masks apart, so a source is built once with its mask
        group = [s for name, items in chosen.items() if (name in masks_for) == masks for s in items]
        build_missing(group, config, cache_root, with_masks=masks, rank=rank, world_size=world_size)


def data_summary(cached: dict[str, list[CachedSource]], manifest: "str | Path") -> dict:
    """Counts per split and label, for the checkpoint's training summary and the model card."""
    out: dict = {"manifest": manifest_paths(manifest)}
    for name, items in cached.items():
        slices: dict[str, int] = {}
        for c in items:
            for lab in c.labels:
                slices[lab] = slices.get(lab, 0) + 1
        patients: dict[str, int] = {}
        for c in items:
            patients[c.patient_label] = patients.get(c.patient_label, 0) + 1
        out[name] = {"patients": patients, "slices": slices}
    return out
