"""Patient-wise splits: disjoint, stratified, seeded; overlap fails loudly."""
from __future__ import annotations

import json

import pytest

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
