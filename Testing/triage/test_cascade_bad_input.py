"""Bad input never gets a verdict computed on garbage: not_analysable with the reason."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest


from PETriageLib.triage.cascade import build_cascade
from PETriageLib.ingest.load import load_series
from PETriageLib.ingest.volume import CTVolume


@pytest.fixture(scope="module")
def cascade(tiny_checkpoints):
    return build_cascade(*tiny_checkpoints, device="cpu")


def subset(vol: CTVolume, keep) -> CTVolume:
    keep = list(keep)
    return dataclasses.replace(vol, hu=vol.hu[keep], z_positions=vol.z_positions[keep],
                               instance_uids=[vol.instance_uids[k] for k in keep])


def assert_not_analysable(result, *words):
    v = result.verdict
    assert v.verdict == "not_analysable", v
    for w in words:
        assert w in v.reason
    assert all(r.p_disease is None and r.p_pe is None and not r.analysable for r in result.rows)
    assert result.timings["stage1"] == 0.0 and result.timings["stage2"] == 0.0  # no model ran
    assert len(result.rows) == result.volume.num_slices


def test_single_slice(cascade, phantom_study):
    assert_not_analysable(cascade.run(subset(phantom_study.volume, [8])), "too few slices (1 < 10)")


def test_single_real_slice(cascade, lidc_slice_dir):
    vol = load_series(lidc_slice_dir)  # the two files hold the same slice
    assert_not_analysable(cascade.run(vol), "too few slices")


def test_gap(cascade, phantom_study):
    n = phantom_study.volume.num_slices
    result = cascade.run(subset(phantom_study.volume, [k for k in range(n) if k not in (7, 8)]))
    assert_not_analysable(result, "gap in the series", "between slices 6 and 7")


def test_not_ct_and_not_axial(cascade, phantom_study):
    vol = phantom_study.volume
    mr = dataclasses.replace(vol, metadata={**vol.metadata, "modality": "MR"})
    assert_not_analysable(cascade.run(mr), "not a CT series (modality MR)")
    coronal = dataclasses.replace(vol, direction=np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]))
    assert_not_analysable(cascade.run(coronal), "not an axial series")


def test_no_lungs(cascade, phantom_study):
    vol = phantom_study.volume
    water = dataclasses.replace(vol, hu=np.zeros_like(vol.hu))
    assert_not_analysable(cascade.run(water), "no lung found", "not a chest CT")


def test_head_ct_from_pydicom_data(cascade):
    """A real head CT slice (pydicom-data), stacked into a 20-slice volume: not a chest CT."""
    from pydicom.data import get_testdata_file

    head = load_series(get_testdata_file("693_J2KR.dcm"))
    assert head.num_slices == 1
    n = 20
    vol = dataclasses.replace(head, hu=np.repeat(head.hu, n, axis=0),
                              z_positions=head.z_positions[0] + 2.0 * np.arange(n),
                              instance_uids=[f"2.25.{k}" for k in range(n)])
    assert_not_analysable(cascade.run(vol), "not a chest CT")
