"""`petriage cache`: listing and pruning a real slice cache built from phantoms, least recently
used first, never a live writer's entry, never files outside the cache layout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from PETriageLib.cli import main
from PETriageLib.preprocess.slices import PreprocessConfig
from PETriageLib.training.cache import cache_sources, config_dir
from PETriageLib.training.cache_admin import (
    FEATURES_DIR, choose_to_prune, parse_size, prune_cache, scan_cache)
from PETriageLib.training.manifest import load_manifest

from support.tiny_training import make_tiny_dataset

DAY = 86400.0
WIDE = PreprocessConfig(["vascular", "lung"], input_size=64)
NARROW = PreprocessConfig(["lung"], input_size=48)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return load_manifest(make_tiny_dataset(tmp_path_factory.mktemp("phantoms"), patients=3, seed=23))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _build(root: Path, sources) -> dict:
    """Three entries of one config, one of another, a kept features file, a dead and a live
    unfinished entry; last uses 1-6 days ago, oldest first in the order listed."""
    cache_sources(sources, WIDE, root)
    cache_sources(sources[:1], NARROW, root)
    wide, narrow = config_dir(root, WIDE.to_dict()), config_dir(root, NARROW.to_dict())
    (root / FEATURES_DIR).mkdir()
    features = root / FEATURES_DIR / "val-scores-0123456789ab.npz"
    np.savez(features, logits=np.zeros((40, 2), np.float32))
    dead = wide / f"{'d' * 16}.tmp{_dead_pid()}"
    live = wide / f"{'e' * 16}.tmp{os.getpid()}"
    for folder in (dead, live):
        folder.mkdir()
        np.save(folder / "images.npy", np.zeros((4, 2, 64, 64), np.float16))
    entries = sorted(p for p in wide.iterdir() if (p / "meta.json").is_file()) + \
        [p for p in narrow.iterdir() if (p / "meta.json").is_file()] + [features]
    now = entries[-1].stat().st_mtime
    for age, path in zip((6, 5, 4, 3, 2), entries):
        os.utime(path, (now - age * DAY, now - age * DAY))
    return {"entries": entries, "dead": dead, "live": live, "now": now, "wide": wide}


def test_scan_lists_every_entry_with_patient_size_and_use(sources, tmp_path) -> None:
    built = _build(tmp_path, sources)
    items = {i.path: i for i in scan_cache(tmp_path)}
    assert set(items) == set(built["entries"]) | {built["dead"], built["live"]}
    slices = [items[p] for p in built["entries"][:4]]
    assert [i.kind for i in slices] == ["slices"] * 4
    assert sorted(i.label for i in slices[:3]) == sorted(s.patient_id for s in sources)
    for item in slices:
        assert item.size >= (item.path / "images.npy").stat().st_size > 0
    assert items[built["entries"][4]].kind == "features"
    assert items[built["dead"]].kind == "unfinished" and not items[built["dead"]].live
    assert items[built["live"]].live
    ages = [(built["now"] - items[p].last_used) / DAY for p in built["entries"]]
    assert np.allclose(ages, [6, 5, 4, 3, 2], atol=1e-3)


def test_reading_an_entry_marks_it_used(sources, tmp_path) -> None:
    built = _build(tmp_path, sources)
    oldest = built["entries"][0]
    before = oldest.stat().st_mtime
    cache_sources(sources, WIDE, tmp_path)
    assert oldest.stat().st_mtime > before + 5 * DAY


def test_prune_to_a_size_drops_the_least_recently_used_and_they_come_back(sources, tmp_path) -> None:
    built = _build(tmp_path, sources)
    items = {i.path: i for i in scan_cache(tmp_path)}
    wide_images = [np.asarray(c.images) for c in cache_sources(sources, WIDE, tmp_path)]
    for age, path in zip((6, 5, 4, 3, 2), built["entries"]):  # reading touched them: set the ages again
        os.utime(path, (built["now"] - age * DAY,) * 2)
    newest_two = built["entries"][3:]
    budget = sum(items[p].size for p in newest_two) + items[built["live"]].size

    removed, left = prune_cache(tmp_path, max_bytes=budget)

    assert {i.path for i in removed} == set(built["entries"][:3]) | {built["dead"]}
    assert left <= budget
    assert all(p.exists() for p in newest_two) and built["live"].exists()
    assert not any(p.exists() for p in built["entries"][:3]) and not built["dead"].exists()
    rebuilt = cache_sources(sources, WIDE, tmp_path)  # the next run rebuilds what went, bit for bit
    assert all(np.array_equal(a, np.asarray(c.images)) for a, c in zip(wide_images, rebuilt))


def test_prune_by_age_and_dry_run(sources, tmp_path) -> None:
    built = _build(tmp_path, sources)
    items = scan_cache(tmp_path)
    chosen = choose_to_prune(items, older_than_s=4.5 * DAY, now=built["now"])
    assert {i.path for i in chosen} == {built["entries"][0], built["entries"][1], built["dead"]}
    assert {i.path for i in choose_to_prune(items, now=built["now"])} == {built["dead"]}  # nothing asked: dead only
    everything = choose_to_prune(items, max_bytes=0, now=built["now"])
    assert built["live"] not in {i.path for i in everything} and len(everything) == len(items) - 1
    removed, _ = prune_cache(tmp_path, max_bytes=0, dry_run=True)
    assert len(removed) == len(items) - 1 and all(i.path.exists() for i in items)


def test_a_folder_that_is_not_a_cache_is_refused_and_left_alone(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "0123456789abcdef").mkdir()  # looks like a config folder but has no config.json
    with pytest.raises(FileNotFoundError, match="not a PETriage slice cache"):
        prune_cache(tmp_path, max_bytes=0)
    assert main(["cache", "prune", str(tmp_path), "--all"]) == 1
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "0123456789abcdef").is_dir()


def test_cli_list_and_prune(sources, tmp_path, capsys) -> None:
    built = _build(tmp_path, sources)
    assert main(["cache", "list", str(tmp_path), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {r["folder"]: r for r in listing["configs"]}
    assert rows[built["wide"].name]["entries"] == 3 and rows[built["wide"].name]["unfinished"] == 2
    assert rows[built["wide"].name]["preprocessing"].startswith("64 px, dynamic crop, windows vascular+lung")
    assert rows[FEATURES_DIR]["entries"] == 1 and len(rows) == 3
    assert listing["bytes"] == sum(r["bytes"] for r in rows.values())
    assert main(["cache", "list", str(tmp_path)]) == 0
    assert "3 entries, 2 unfinished" in capsys.readouterr().out
    assert main(["cache", "prune", str(tmp_path), "--all", "--max-size", "1G"]) == 1
    assert main(["cache", "prune", str(tmp_path), "--older-than", "3.5"]) == 0
    assert "removed 4 entries" in capsys.readouterr().out  # the three oldest and the dead writer's
    assert [p.exists() for p in built["entries"]] == [False, False, False, True, True]
    assert main(["cache", "prune", str(tmp_path), "--all"]) == 0
    assert [i.path for i in scan_cache(tmp_path)] == [built["live"]]


def test_a_features_dir_of_its_own_is_a_cache_too(tmp_path) -> None:
    """`train-patient --features-dir DIR` keeps the files in DIR itself; other files there stay."""
    kept = [tmp_path / "train-multiscale-0123456789ab.npz", tmp_path / "val-scores-ba9876543210.npz"]
    mine = [tmp_path / "results-0123456789ab.npz", tmp_path / "train-scores-short.npz"]
    for path in kept + mine:
        np.savez(path, x=np.zeros(8))
    assert sorted(i.path for i in scan_cache(tmp_path)) == sorted(kept)
    assert main(["cache", "prune", str(tmp_path), "--all"]) == 0
    assert not any(p.exists() for p in kept) and all(p.exists() for p in mine)


def test_parse_size() -> None:
    assert parse_size("20G") == 20_000_000_000
    assert parse_size("1.5t") == 1_500_000_000_000
    assert parse_size("500MB") == 500_000_000 and parse_size("12") == 12 and parse_size("2GiB") == 2 * 1024**3
    with pytest.raises(ValueError, match="e.g. 20G"):
        parse_size("lots")


def test_low_disk_warning_names_the_way_out(tmp_path, caplog) -> None:
    from PETriageLib.training.cache_admin import warn_if_disk_low

    with caplog.at_level("WARNING", logger="PETriageLib.training.cache_admin"):
        assert warn_if_disk_low(tmp_path, low=1) is False and not caplog.text
        assert warn_if_disk_low(tmp_path, low=10**18) is True  # more than any disk: always "low"
    assert f"petriage cache prune {tmp_path} --max-size" in caplog.text


def test_a_live_writers_entry_is_waited_for_and_a_dead_writers_ignored(sources, tmp_path, caplog) -> None:
    """Two runs sharing a cache: the second waits for the entry the first is writing instead of
    writing it again; a temporary folder left by a killed run does not hold anyone up."""
    import threading

    from PETriageLib.training.cache import _being_built, _build, _hash, source_fingerprint

    dest = config_dir(tmp_path, WIDE.to_dict()) / _hash(source_fingerprint(sources[0]))
    dest.parent.mkdir(parents=True)
    dead = dest.with_name(f"{dest.name}.tmp{_dead_pid()}")
    dead.mkdir()
    assert not _being_built(dest)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        dest.with_name(f"{dest.name}.tmp{writer.pid}").mkdir()
        assert _being_built(dest)
        got = {}
        with caplog.at_level("INFO", logger="PETriageLib.training.cache"):
            waiter = threading.Thread(target=lambda: got.update(c=cache_sources(sources[:1], WIDE, tmp_path)))
            waiter.start()
            time.sleep(1.0)
            assert waiter.is_alive()  # waiting for the live writer, not writing
            _build(sources[0], WIDE, dest)  # what the writer would have finished
            waiter.join(timeout=30)
        assert not waiter.is_alive() and "caching" not in caplog.text
        assert got["c"][0].images.shape == (16, 2, 64, 64)
    finally:
        writer.kill()
        writer.wait()
    assert not _being_built(dest)
    left_behind = {dead, dest.with_name(f"{dest.name}.tmp{writer.pid}")}
    assert {i.path for i in choose_to_prune(scan_cache(tmp_path))} == left_behind
