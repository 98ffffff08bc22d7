"""The demo's study: real anatomy on a CAD-PE case where ../shared/data is there."""
import csv

import pytest

from PETriageLib.cli.demo_study import DEMO_CASE, make_demo_study
from Testing.support.data_paths import CADPE_VESSELS


@pytest.mark.skipif(not (CADPE_VESSELS / f"{DEMO_CASE}_lungmask.nii.gz").is_file(),
                    reason=f"CAD-PE case {DEMO_CASE} not found in {CADPE_VESSELS}")
def test_demo_study_is_real_anatomy_ctpa_with_pe(tmp_path):
    demo = make_demo_study(tmp_path, seed=7, pe=True)
    assert demo.anatomy == "real" and DEMO_CASE in demo.source
    assert demo.series_dir == tmp_path / "study" / "ctpa" / "series"
    assert len(list(demo.series_dir.iterdir())) == len(demo.study.slice_labels) == 81
    labels = list(csv.DictReader(open(tmp_path / "study" / "ctpa" / "labels.csv")))
    assert demo.study.patient_label == "pe" and sum(int(r["pe"]) for r in labels) == 34
