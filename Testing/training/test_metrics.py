"""Metrics and the paper-format tables on hand-built cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from PETriageLib.training.metrics import (auroc_ci, binary_report, calibration, fmt_count,
                                          threshold_for_sensitivity)
from PETriageLib.training.tables import confusion_table, patient_table, slice_table


def test_fmt_count_matches_paper() -> None:
    assert fmt_count(521, 542) == "96.1% (521/542)"
    assert fmt_count(20, 20) == "100.0% (20/20)"
    assert fmt_count(0, 0) == "n/a (0/0)"


def _hand_case() -> tuple[np.ndarray, np.ndarray]:
    # 6 negatives, 4 positives. At threshold 0.5: negatives -> 5 correct (0.6 is a false positive),
    # positives -> 3 correct (0.3 is a false negative).
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.2, 0.4, 0.45, 0.6, 0.3, 0.7, 0.8, 0.9])
    return y, p


def test_binary_report_known_confusion() -> None:
    y, p = _hand_case()
    rep = binary_report(y, p, 0.5, ["wnl", "disease"], n_boot=200)
    assert rep["confusion_matrix"]["rows_true_cols_pred"] == [[5, 1], [1, 3]]
    assert rep["accuracy"]["text"] == "80.0% (8/10)"
    assert rep["per_class"]["wnl"]["text"] == "83.3% (5/6)"
    assert rep["per_class"]["disease"]["text"] == "75.0% (3/4)"
    # AUROC by hand: positive/negative pairs ranked correctly. 0.3 beats 0.1, 0.2, 0.2 (3 of 6);
    # 0.7, 0.8, 0.9 beat all 6: (3 + 18) / 24 = 0.875.
    assert rep["auroc"]["auroc"] == pytest.approx(0.875)
    assert rep["auroc"]["ci_low"] <= 0.875 <= rep["auroc"]["ci_high"]
    assert rep["auroc"]["ci_high"] - rep["auroc"]["ci_low"] > 0.05  # 10 samples: a wide interval


def test_auroc_undefined_with_one_class() -> None:
    assert auroc_ci(np.ones(5), np.linspace(0, 1, 5))["auroc"] is None


def test_threshold_for_sensitivity() -> None:
    y = np.array([1] * 10 + [0] * 5)
    p = np.concatenate([np.linspace(0.1, 1.0, 10), np.zeros(5)])
    # 90%: one positive (0.1) may be missed -> threshold at the second lowest positive, 0.2.
    assert threshold_for_sensitivity(y, p, 0.90) == pytest.approx(0.2)
    assert threshold_for_sensitivity(y, p, 1.0) == pytest.approx(0.1)
    assert threshold_for_sensitivity(y, p, 0.95) == pytest.approx(0.1)  # 0.5 misses are not allowed


def test_calibration_perfect_and_off() -> None:
    y = np.array([0, 0, 1, 1])
    good = calibration(y, np.array([0.0, 0.0, 1.0, 1.0]))
    assert good["ece"] == pytest.approx(0.0) and good["brier"] == pytest.approx(0.0)
    bad = calibration(y, np.array([0.95, 0.95, 0.95, 0.95]))
    assert bad["ece"] == pytest.approx(0.45)  # one bin: confidence 0.95, observed 0.5


def test_slice_table_matches_paper_format() -> None:
    y, p = _hand_case()
    rep = binary_report(y, p, 0.5, ["wnl", "disease"], n_boot=0)
    rep["auroc"] = {"auroc": 0.875, "ci_low": 0.6, "ci_high": 1.0}
    expected = ("| Model | Accuracy | WNL sensitivity | Disease sensitivity | AUROC (95% CI) |\n"
                "|---|---|---|---|---|\n"
                "| CBAMDRN (DWL) | 80.0% (8/10) | 83.3% (5/6) | 75.0% (3/4) | 0.875 (0.600-1.000) |")
    assert slice_table([("CBAMDRN (DWL)", rep)], ["wnl", "disease"]) == expected


def test_patient_and_confusion_tables() -> None:
    assert patient_table([("PE (sensitivity)", "100.0% (20/20)")]) == (
        "| Patients | Correctly classified |\n|---|---|\n| PE (sensitivity) | 100.0% (20/20) |")
    assert confusion_table([[5, 1], [1, 3]], ["other", "pe"]).splitlines()[2] == "| other | 5 | 1 |"
