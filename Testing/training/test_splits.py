"""Patient-wise splits: disjoint, stratified, seeded; overlap fails loudly."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from PETriageLib.training.data import make_splits
from PETriageLib.training.manifest import Source
from PETriageLib.training.splits import SplitOverlapError, check_disjoint, load_splits, save_splits, split_patients


def _labels() -> dict[str, str]:
    labels = {f"PE{i:03d}": "pe" for i in range(50)}
    labels.update({f"OT{i:03d}": "other" for i in range(30)})
    labels.update({f"WN{i:03d}": "wnl" for i in range(20)})
    return labels


def test_split_is_patient_disjoint_complete_and_stratified() -> None:
    labels = _labels()
    splits = split_patients(labels, (5, 3, 2), seed=1)
    all_ids = splits["train"] + splits["val"] + splits["test"]
    assert sorted(all_ids) == sorted(labels)  # every patient exactly once
    assert len(set(all_ids)) == len(all_ids)
    for label, n in (("pe", 50), ("other", 30), ("wnl", 20)):
        counts = [sum(labels[p] == label for p in splits[s]) for s in ("train", "val", "test")]
        assert counts == [n * 5 // 10, n * 3 // 10, n * 2 // 10]


def test_split_is_seeded() -> None:
    labels = _labels()
    assert split_patients(labels, seed=3) == split_patients(labels, seed=3)
    assert split_patients(labels, seed=3)["test"] != split_patients(labels, seed=4)["test"]


def test_uneven_group_sizes_still_sum() -> None:
    splits = split_patients({f"P{i}": "pe" for i in range(7)}, (5, 3, 2), seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 2, 1]


def test_overlap_fails_loudly_and_names_the_patient(tmp_path) -> None:
    with pytest.raises(SplitOverlapError, match="P7 \\(train and test\\)"):
        check_disjoint({"train": ["P1", "P7"], "val": ["P2"], "test": ["P7"]})
    bad = tmp_path / "splits.json"
    bad.write_text(json.dumps({"train": ["A", "B"], "val": ["B"]}))
    with pytest.raises(SplitOverlapError, match="B"):
        load_splits(bad)


def test_save_and_load_round_trip(tmp_path) -> None:
    splits = split_patients(_labels(), seed=0)
    save_splits(splits, tmp_path / "s.json")
    assert load_splits(tmp_path / "s.json") == splits


def test_bad_ratios_rejected() -> None:
    with pytest.raises(ValueError, match="ratios"):
        split_patients({"A": "pe"}, (1, 1))


def _sources(labels: dict[str, str]) -> list[Source]:
    return [Source(patient_id=p, kind="dicom", paths=[Path(p)], patient_label=lab) for p, lab in labels.items()]


def test_splits_file_extended_with_added_patients_only_when_training(tmp_path, caplog) -> None:
    """Retraining on added data: the old patients keep their split, the new ones are split by the ratios."""
    old = {p: lab for p, lab in _labels().items() if p.endswith(("0", "1", "2", "3", "4"))}
    file = tmp_path / "splits.json"
    first = make_splits(_sources(old), file, (5, 3, 2), seed=0)
    added = {f"NEW{i:02d}": "pe" for i in range(10)}
    both = _sources({**old, **added})

    with caplog.at_level(logging.WARNING):
        unchanged = make_splits(both, file, (1, 0, 0), seed=0)  # evaluation: never rewrites the file
    assert unchanged == first and load_splits(file) == first
    assert "no split for 10 of the manifest's patients" in caplog.text

    extended = make_splits(both, file, (1, 0, 0), seed=0, extend=True)
    assert extended["train"] == sorted(first["train"] + list(added))
    assert extended["val"] == first["val"] and extended["test"] == first["test"]
    assert load_splits(file) == extended
    assert make_splits(both, file, (1, 0, 0), seed=0, extend=True) == extended  # nothing new the second time
