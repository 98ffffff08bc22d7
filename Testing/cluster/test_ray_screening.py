"""Archive screening on a real local Ray cluster (2 CPUs): the same worklist as the in-process
loop, every series accounted for when a worker is killed, and a rerun that does no work."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from support.screening_cases import OPTIONS, PHANTOMS, REFUSED, assert_same_worklist

from PETriageLib.cluster.actors import RayWorkerPool
from PETriageLib.cluster.run import screen_on_ray, write_worklist
from PETriageLib.cluster.sources import open_source
from PETriageLib.cluster.store import ResultStore

pytest.importorskip("ray")


def assert_reading_overlapped_triage(outcomes) -> None:
    """On some worker, a series was read while another one was being triaged."""
    timed = [o for o in outcomes if o.timeline is not None]
    assert len(timed) == PHANTOMS + 1  # the 4-slice CT is read and refused by the gate; the MR is not read
    overlaps = [(a, b) for a in timed for b in timed if a is not b and a.worker == b.worker
                and b.timeline[0] < a.timeline[2] and b.timeline[1] > a.timeline[1]]
    assert overlaps


def test_ray_screen_equals_in_process_and_a_rerun_does_no_work(ray_cluster, archive, spec, reference, tmp_path):
    tasks = open_source(str(archive))
    assert len(tasks) == PHANTOMS + REFUSED
    store = ResultStore(tmp_path / "out")
    pool = RayWorkerPool(2, spec, OPTIONS, store.reports)
    seen = []
    try:
        key, summary = screen_on_ray(tasks, pool, store, on_outcome=seen.append)
        assert_reading_overlapped_triage(seen)
        assert (summary.counts["done"], summary.counts["skipped"], summary.counts["failed"]) == (PHANTOMS, REFUSED, 0)
        assert summary.retried == 0 and summary.step_seconds["stage1"] > 0
        entries = store.worklist(key)
        assert_same_worklist(entries, reference)
        workers = {o.worker for o in store.outcomes(key) if o.status == "done"}
        assert len(workers) == 2  # both actors screened
        for e in entries:
            if e.verdict != "not_analysable" or e.num_slices == 4:  # the gate's refusal has a report too
                report = json.loads((Path(e.report_dir) / "report.json").read_text())
                assert report["series"]["series_uid"] == e.series_uid
        assert not list(store.reports.glob(".staging-*"))
        rows = list(csv.DictReader(write_worklist(store, key, tasks).open()))
        assert [r["series_uid"] for r in rows] == [e.series_uid for e in entries]
        stamps = {p: p.stat().st_mtime_ns for p in store.reports.rglob("report.json")}

        again_key, again = screen_on_ray(tasks, pool, ResultStore(tmp_path / "out"))
        assert again_key == key and again.screened == 0 and again.already_finished == PHANTOMS + REFUSED
        assert stamps == {p: p.stat().st_mtime_ns for p in store.reports.rglob("report.json")}
    finally:
        pool.shutdown()


def test_a_killed_worker_loses_only_its_series_and_they_are_retried(ray_cluster, archive, spec, reference,
                                                                    tmp_path):
    tasks = open_source(str(archive))
    store = ResultStore(tmp_path / "out")
    pool = RayWorkerPool(2, spec, OPTIONS, store.reports)
    killed = []

    def kill_once(outcome):
        if not killed:
            victim = pool.busy_actor()
            assert victim is not None  # more series than calls in flight: someone is working
            ray_cluster.kill(victim)
            killed.append(victim)

    try:
        key, summary = screen_on_ray(tasks, pool, store, on_outcome=kill_once)
    finally:
        pool.shutdown()
    assert killed and summary.retried >= 1
    outcomes = store.outcomes(key)
    assert len(outcomes) == PHANTOMS + REFUSED
    assert {o.status for o in outcomes} <= {"done", "skipped"}
    retried = [o for o in outcomes if o.attempts > 1]
    assert 1 <= len(retried) <= 2  # the calls in flight on the killed actor, no more
    assert_same_worklist(store.worklist(key), reference)
