"""Seeded fuzzing of ingest: every kind of damage, and a sample of mutated headers (synthetic and
real), through scan, load and the gate. Each must be refused or warned about, naming the defect;
nothing may crash. The CI sample is small; the full run:

    PETRIAGE_FUZZ_CASES=400 .venv/bin/python -m pytest -q Testing/ingest/test_fuzz.py
    (or: PYTHONPATH=. .venv/bin/python scripts/fuzz_ingest.py --cases 400 --seed 25)
"""
from __future__ import annotations

import os
import random

from support.data_paths import REAL_SERIES
from support.fuzz_series import FuzzCase, counts, judge, run_cases, sample_cases, synthetic_cases, write_good

CASES = int(os.environ.get("PETRIAGE_FUZZ_CASES", "60"))
SEED = int(os.environ.get("PETRIAGE_FUZZ_SEED", "25"))


def _report(outcomes) -> str:
    return "\n".join(f"{o.kind}: {o.case}: {o.detail}" for o in outcomes if o.kind != "clean")


def test_every_kind_of_damage_is_named(tmp_path):
    """All defect kinds except the header-value grid (sampled below): geometry, tilt, truncation,
    garbage pixels, corrupt RLE and JPEG 2000, huge sizes, unreadable files, controls."""
    kinds = [c for c in synthetic_cases(random.Random(SEED)) if not c.name.startswith("header-")]
    outcomes = run_cases(kinds, tmp_path)
    assert len(outcomes) >= 35 and {"clean"} == {o.kind for o in outcomes}, _report(outcomes)


def test_seeded_sample_of_damaged_headers(tmp_path):
    real = REAL_SERIES if REAL_SERIES.is_dir() else None
    cases = sample_cases(SEED, CASES, real)
    outcomes = run_cases(cases, tmp_path)
    tally = counts(outcomes)
    # without the real series the synthetic pool (240 cases) bounds a large sample
    assert tally["cases"] == len(cases) >= min(CASES, 240), tally
    assert tally["crash"] == 0 and tally["questionable"] == 0, _report(outcomes)


def test_the_judge_flags_damage_nobody_mentions(tmp_path):
    silent = FuzzCase("silent", ("nothing-says-this",), lambda folder: write_good(folder))
    assert judge(silent, tmp_path / "a").kind == "questionable"
    control = FuzzCase("control", (), lambda folder: write_good(folder), damaged=False)
    assert judge(control, tmp_path / "b").kind == "clean"
