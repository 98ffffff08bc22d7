"""The listener's persistent queue (SQLite, WAL): every received instance keyed by SOPInstanceUID,
every series with its state. Each change is one transaction, so a crash (SIGKILL) loses nothing
that was acknowledged: on restart, a series being triaged is triaged again and a series still
arriving gets a fresh settle time.

Series states: receiving -> waiting (settled) -> triaging -> done | skipped | failed.
Result sending (done series only): pending -> sent (or stays pending, retried with back-off).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PETriageLib.triage.worklist import WorklistEntry

log = logging.getLogger(__name__)

STATES = ("receiving", "waiting", "triaging", "done", "skipped", "failed")
DB_NAME = "queue.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path TEXT, skipped TEXT, received_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT, patient_id TEXT, modality TEXT, description TEXT,
    calling_ae TEXT, first_at REAL, last_at REAL, state TEXT NOT NULL, reason TEXT, version INTEGER NOT NULL,
    triage_runs INTEGER NOT NULL DEFAULT 0, verdict TEXT, pe_score REAL, disease_score REAL,
    patient_probability REAL, max_pe_slice INTEGER, num_slices INTEGER, result_dir TEXT,
    send_state TEXT, send_attempts INTEGER NOT NULL DEFAULT 0, next_send_at REAL, send_error TEXT,
    updated_at REAL);
"""


@dataclass(frozen=True)
class SeriesRow:
    """One series as the queue holds it."""

    series_uid: str
    study_uid: str | None
    patient_id: str | None
    modality: str | None
    description: str | None
    calling_ae: str | None
    state: str
    reason: str | None
    version: int
    triage_runs: int
    verdict: str | None
    pe_score: float | None
    disease_score: float | None
    patient_probability: float | None
    max_pe_slice: int | None
    num_slices: int | None
    result_dir: str | None
    send_state: str | None
    send_attempts: int
    next_send_at: float | None
    send_error: str | None
    instances: int = 0
    skipped_instances: int = 0


@dataclass(frozen=True)
class Received:
    """What recording one instance did: new, a duplicate, or a new version of a triaged series."""

    new: bool
    new_version: int | None = None


class SeriesQueue:
    """One connection shared by the listener's threads, one lock around it; other processes
    (``petriage queue``) open their own and read beside it (WAL)."""

    def __init__(self, spool: "str | Path") -> None:
        self.path = Path(spool) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an acknowledged instance survives a power cut too
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _tx(self) -> "_Transaction":
        return _Transaction(self.db, self.lock)

    def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def known(self, sop_uid: str) -> bool:
        return bool(self._all("SELECT 1 FROM instances WHERE sop_uid=?", (sop_uid,)))

    def record_instance(self, sop_uid: str, series_uid: str, path: str | None, header: dict,
                        calling_ae: str, skipped: str | None = None) -> Received:
        """Record a received instance (``skipped``: why it will not be used, e.g. corrupt pixel data).

        A SOPInstanceUID already recorded is a duplicate and changes nothing; a new instance of a
        series that was already triaged starts a new version of it (said in the log)."""
        now = time.time()
        with self._tx():
            if self.known(sop_uid):
                return Received(False)
            self.db.execute("INSERT INTO instances VALUES (?,?,?,?,?)", (sop_uid, series_uid, path, skipped, now))
            row = self.db.execute("SELECT state, version FROM series WHERE series_uid=?", (series_uid,)).fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO series (series_uid, study_uid, patient_id, modality, description, calling_ae, "
                    "first_at, last_at, state, version, updated_at) VALUES (?,?,?,?,?,?,?,?,'receiving',1,?)",
                    (series_uid, header.get("study_uid"), header.get("patient_id"), header.get("modality"),
                     header.get("description"), calling_ae, now, now, now))
                return Received(True)
            state, version = row
            if state in ("receiving", "waiting"):
                self.db.execute("UPDATE series SET last_at=?, state='receiving', updated_at=? WHERE series_uid=?",
                                (now, now, series_uid))
                return Received(True)
            # triaging, done, skipped or failed: new content, so a new version (a worker on the old one
            # finds its version gone and drops its result)
            self.db.execute("UPDATE series SET last_at=?, state='receiving', version=?, reason=NULL, "
                            "updated_at=? WHERE series_uid=?", (now, version + 1, now, series_uid))
            log.warning("series %s: a new instance after it was %s; it will be triaged again as version %d",
                        series_uid, state, version + 1)
            return Received(True, version + 1)

    def recover(self) -> list[str]:
        """After a start: series caught in triage go back to waiting (triaged again); series still
        arriving get a fresh settle time (their sender may be resending). Returns the re-queued UIDs."""
        now = time.time()
        with self._tx():
            again = [r[0] for r in self.db.execute("SELECT series_uid FROM series WHERE state='triaging'")]
            self.db.execute("UPDATE series SET state='waiting', updated_at=? WHERE state='triaging'", (now,))
            self.db.execute("UPDATE series SET last_at=? WHERE state='receiving'", (now,))
        for uid in again:
            log.warning("series %s was being triaged when the listener stopped: triaged again", uid)
        return again

    def settle(self, settle_s: float) -> list[str]:
        """Series with no instance for ``settle_s`` seconds become waiting (complete)."""
        cutoff, now = time.time() - settle_s, time.time()
        with self._tx():
            uids = [r[0] for r in self.db.execute(
                "SELECT series_uid FROM series WHERE state='receiving' AND last_at<=?", (cutoff,))]
            self.db.execute("UPDATE series SET state='waiting', updated_at=? WHERE state='receiving' AND last_at<=?",
                            (now, cutoff))
        return uids

    def claim(self) -> tuple[str, int] | None:
        """The oldest waiting series, now triaging: (series_uid, version), or None."""
        with self._tx():
            row = self.db.execute("SELECT series_uid, version FROM series WHERE state='waiting' "
                                  "ORDER BY last_at LIMIT 1").fetchone()
            if row is None:
                return None
            self.db.execute("UPDATE series SET state='triaging', triage_runs=triage_runs+1, updated_at=? "
                            "WHERE series_uid=?", (time.time(), row[0]))
        return row[0], int(row[1])

    def usable_files(self, series_uid: str) -> list[str]:
        return [r[0] for r in self._all(
            "SELECT path FROM instances WHERE series_uid=? AND skipped IS NULL ORDER BY received_at", (series_uid,))]

    def skipped_files(self, series_uid: str) -> list[tuple[str, str]]:
        """(path, reason) of the series' instances received but not usable."""
        return [(r[0], r[1]) for r in self._all(
            "SELECT path, skipped FROM instances WHERE series_uid=? AND skipped IS NOT NULL", (series_uid,))]

    def skipped_instances(self, series_uid: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._all(
            "SELECT sop_uid, skipped FROM instances WHERE series_uid=? AND skipped IS NOT NULL", (series_uid,))]

    def finish(self, series_uid: str, version: int, state: str, reason: str | None = None,
               entry: WorklistEntry | None = None, result_dir: str | None = None, send: bool = False) -> bool:
        """Record the end of a triage of ``version``; False (nothing changed) when a newer version arrived."""
        if state not in ("done", "skipped", "failed"):
            raise ValueError(f"a triage ends done, skipped or failed, not {state!r}")
        o = {} if entry is None else {**entry.to_dict(), "result_dir": result_dir}
        with self._tx():
            cur = self.db.execute(
                "UPDATE series SET state=?, reason=?, verdict=?, pe_score=?, disease_score=?, patient_probability=?, "
                "max_pe_slice=?, num_slices=?, result_dir=?, send_state=?, send_attempts=0, next_send_at=?, "
                "send_error=NULL, updated_at=? WHERE series_uid=? AND version=? AND state='triaging'",
                (state, reason, o.get("verdict"), o.get("pe_score"), o.get("disease_score"),
                 o.get("patient_probability"), o.get("max_pe_slice"), o.get("num_slices"), o.get("result_dir"),
                 "pending" if send else None, time.time() if send else None, time.time(), series_uid, version))
        if cur.rowcount == 0:
            log.warning("series %s: version %d superseded while it was triaged; its result is dropped",
                        series_uid, version)
        return cur.rowcount == 1

    def due_sends(self) -> list[SeriesRow]:
        """Done series whose results wait to be sent and whose back-off has passed."""
        return [r for r in self.series() if r.send_state == "pending" and (r.next_send_at or 0) <= time.time()]

    def sent(self, series_uid: str, result_dir: str) -> None:
        with self._tx():
            self.db.execute("UPDATE series SET send_state='sent', send_error=NULL, updated_at=? "
                            "WHERE series_uid=? AND result_dir=?", (time.time(), series_uid, result_dir))

    def send_failed(self, series_uid: str, error: str, retry_in_s: float) -> None:
        with self._tx():
            self.db.execute("UPDATE series SET send_attempts=send_attempts+1, send_error=?, next_send_at=?, "
                            "updated_at=? WHERE series_uid=?", (error, time.time() + retry_in_s, time.time(),
                                                                series_uid))

    def series(self) -> list[SeriesRow]:
        names = [f.name for f in SeriesRow.__dataclass_fields__.values()][:-2]
        counts = {r[0]: (r[1], r[2]) for r in self._all(
            "SELECT series_uid, COUNT(*), SUM(skipped IS NOT NULL) FROM instances GROUP BY series_uid")}
        rows = self._all(f"SELECT {', '.join(names)} FROM series ORDER BY first_at")
        return [SeriesRow(*r, *counts.get(r[0], (0, 0))) for r in rows]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): one writer at a time, all or nothing."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self.db, self.lock = db, lock

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
