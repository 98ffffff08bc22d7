"""The listener's queue on its own (real SQLite files): duplicates, settling, claiming, recovery
after a crash, versions when a triaged series gets new instances, and the send back-off."""
from __future__ import annotations

import time

import pytest

from PETriageLib.pacs.send import Destination, backoff_s
from PETriageLib.pacs.series_queue import SeriesQueue

HEADER = {"study_uid": "1.2", "patient_id": "P", "modality": "CT", "description": "chest"}


def test_duplicates_settle_claim_and_recovery_after_a_crash(tmp_path):
    q = SeriesQueue(tmp_path)
    assert q.record_instance("1.1", "9.9", "a.dcm", HEADER, "ORTHANC").new
    assert not q.record_instance("1.1", "9.9", "a.dcm", HEADER, "ORTHANC").new  # the same SOP instance again
    q.record_instance("1.2", "9.9", "b.dcm", HEADER, "ORTHANC", skipped="pixel data cannot be decoded: x")
    assert q.settle(60) == [] and q.claim() is None  # still arriving
    assert q.settle(0) == ["9.9"] and q.claim() == ("9.9", 1)
    assert q.usable_files("9.9") == ["a.dcm"] and q.skipped_instances("9.9")[0][0] == "1.2"
    q.close()  # the process dies while triaging

    again = SeriesQueue(tmp_path)
    assert again.recover() == ["9.9"]
    (row,) = again.series()
    assert (row.state, row.triage_runs, row.instances, row.skipped_instances) == ("waiting", 1, 2, 1)
    assert again.claim() == ("9.9", 1)
    assert again.finish("9.9", 1, "done", "because", send=True)
    assert [r.series_uid for r in again.due_sends()] == ["9.9"]


def test_new_instances_after_triage_make_a_new_version_and_drop_a_stale_result(tmp_path):
    q = SeriesQueue(tmp_path)
    q.record_instance("1.1", "9.9", "a.dcm", HEADER, "ORTHANC")
    q.settle(0)
    assert q.claim() == ("9.9", 1)
    assert q.record_instance("1.3", "9.9", "c.dcm", HEADER, "ORTHANC").new_version == 2  # arrives mid-triage
    assert not q.finish("9.9", 1, "done", "stale")  # the old version's result is dropped
    (row,) = q.series()
    assert (row.state, row.version, row.verdict) == ("receiving", 2, None)
    with pytest.raises(ValueError, match="done, skipped or failed"):
        q.finish("9.9", 2, "waiting")


def test_send_failures_back_off_and_stay_pending(tmp_path):
    q = SeriesQueue(tmp_path)
    q.record_instance("1.1", "9.9", "a.dcm", HEADER, "ORTHANC")
    q.settle(0)
    q.claim()
    q.finish("9.9", 1, "done", "r", send=True)
    q.send_failed("9.9", "no association with X", 60)
    (row,) = q.series()
    assert (row.send_state, row.send_attempts, row.send_error) == ("pending", 1, "no association with X")
    assert row.next_send_at > time.time() + 50 and q.due_sends() == []
    assert [backoff_s(n, 2, 300) for n in range(10)] == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert Destination.parse("ORTHANC@127.0.0.1:4242") == Destination("ORTHANC", "127.0.0.1", 4242)
    with pytest.raises(ValueError, match="AET@HOST:PORT"):
        Destination.parse("127.0.0.1:4242")
