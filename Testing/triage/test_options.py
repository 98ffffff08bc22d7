"""CascadeOptions refuse what cannot work, naming the option: thresholds outside [0, 1] or not
finite, sizes below 1, unknown modes; the CLI says so in one line."""
from __future__ import annotations

import math

import pytest

from PETriageLib.triage.options import CascadeOptions


@pytest.mark.parametrize("field, value, message", [
    ("threshold_pe", math.nan, r"threshold_pe must be a finite number in \[0, 1\], got nan"),
    ("threshold_pe", 5.0, r"threshold_pe must be a finite number in \[0, 1\], got 5\.0"),
    ("threshold_disease", -0.1, r"threshold_disease must be .* got -0\.1"),
    ("threshold_disease", "0.5", r"threshold_disease must be .* got '0\.5'"),
    ("threshold_pe", math.inf, r"threshold_pe must be .* got inf"),
    ("batch_size", 0, r"batch_size must be a whole number >= 1, got 0"),
    ("batch_size", 2.5, r"batch_size must be a whole number >= 1, got 2\.5"),
    ("min_run", 0, r"min_run must be a whole number >= 1, got 0"),
    ("min_slices", -3, r"min_slices must be a whole number >= 1, got -3"),
    ("inference", "turbo", r"unknown inference path 'turbo'"),
    ("domain_check", "maybe", r"unknown domain check 'maybe'"),
])
def test_bad_option_is_refused_naming_it(field, value, message):
    with pytest.raises(ValueError, match=message):
        CascadeOptions(**{field: value})


def test_edges_are_accepted():
    opts = CascadeOptions(threshold_pe=0.0, threshold_disease=1.0, batch_size=1, min_run=1, min_slices=1)
    assert (opts.threshold_pe, opts.threshold_disease, opts.batch_size) == (0.0, 1.0, 1)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "argument --batch-size: must be a whole number >= 1, got '0'"),
    (["--batch-size", "2.5"], "argument --batch-size: must be a whole number >= 1, got '2.5'"),
    (["--top-k", "-1"], "argument --top-k: must be a whole number >= 0, got '-1'"),
    (["--threshold", "nan"], "argument --threshold: must be a finite number in [0, 1], got 'nan'"),
    (["--threshold-disease", "5"], "argument --threshold-disease: must be a finite number in [0, 1], got '5'"),
])
def test_cli_refuses_bad_options_before_loading_models(phantom_series_dir, tmp_path, capsys, args, message):
    """A usage error (exit 2) in one line, before any model loads (the models named do not even exist)."""
    from PETriageLib.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["triage", str(phantom_series_dir), "--models", "no-such-1", "no-such-2", "--out", str(tmp_path), *args])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))
