"""A DICOMweb source against a real server: Orthanc with its DICOMweb plugin, fed by STOW-RS,
listed by QIDO-RS and fetched by WADO-RS; the worklist equals the local folder's."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from support.screening_cases import OPTIONS, assert_same_worklist
from support.dicom_factory import chest_hu, write_series

from PETriageLib.cluster.dicomweb import client, dicomweb_tasks, fetch_series
from PETriageLib.cluster.actors import RayWorkerPool
from PETriageLib.cluster.run import screen_in_process, screen_on_ray
from PETriageLib.cluster.sources import open_source
from PETriageLib.cluster.store import ResultStore
from PETriageLib.ingest.load import load_series
from PETriageLib.screening.many_series import folder_sources

pytest.importorskip("dicomweb_client")


@pytest.fixture(scope="module")
def served(orthanc_dicomweb, archive, tmp_path_factory):
    """Two phantom studies and an MR series stored on the server (STOW-RS); their local folder."""
    local = tmp_path_factory.mktemp("served")
    files = [f for s in ("study0", "study1") for f in sorted((archive / s / "series").glob("*.dcm"))]
    files += write_series(local / "mr", chest_hu(12), modality="MR")
    client(orthanc_dicomweb).store_instances([pydicom.dcmread(f) for f in files])
    return orthanc_dicomweb, [archive / "study0", archive / "study1", local / "mr"]


def test_qido_lists_every_series_and_wado_fetches_the_same_volume(served, tmp_path):
    url, folders = served
    tasks = {t.series_uid: t for t in open_source(url)}
    local = {s.series_uid: s for f in folders for s in folder_sources(f)}
    assert set(tasks) == set(local)
    for uid, task in tasks.items():
        assert (task.modality, task.num_instances) == (local[uid].modality, len(local[uid].files))
        assert task.source == f"{url}/studies/{task.study_uid}/series/{uid}" and not task.files
    ct = next(t for t in tasks.values() if t.modality == "CT")
    fetched = load_series(fetch_series(ct, tmp_path / "wado"))
    original = load_series(local[ct.series_uid].files)
    np.testing.assert_array_equal(fetched.hu, original.hu)
    np.testing.assert_allclose(fetched.spacing, original.spacing)
    np.testing.assert_allclose(fetched.origin, original.origin)


def check_screened(store, key, summary, url, reference) -> None:
    """Both phantom studies as the folder screen has them, the MR series skipped by modality."""
    assert (summary.counts["done"], summary.counts["skipped"], summary.counts["failed"]) == (2, 1, 0)
    entries = store.worklist(key)
    [mr] = [e for e in entries if e.verdict == "not_analysable"]
    assert mr.reason == "not a CT series (modality MR)"
    assert_same_worklist([e for e in entries if e is not mr], {e.series_uid: reference[e.series_uid]
                                                               for e in entries if e is not mr})
    assert all(e.source.startswith(f"{url}/studies/") for e in entries)
    assert not list(store.reports.glob(".staging-*"))


def test_a_dicomweb_archive_screens_like_its_folders_in_process(served, spec, reference, tmp_path):
    url, _ = served
    store = ResultStore(tmp_path / "out")
    key, summary = screen_in_process(dicomweb_tasks(url), spec, OPTIONS, store)
    check_screened(store, key, summary, url, reference)


def test_ray_workers_fetch_from_dicomweb_themselves(ray_cluster, served, spec, reference, tmp_path):
    url, _ = served
    store = ResultStore(tmp_path / "out")
    pool = RayWorkerPool(1, spec, OPTIONS, store.reports)
    try:
        key, summary = screen_on_ray(dicomweb_tasks(url), pool, store)
    finally:
        pool.shutdown()
    check_screened(store, key, summary, url, reference)
