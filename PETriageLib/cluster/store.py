"""The output store of an archive screening: OUT/results.sqlite (one row per series and model
set, each write one transaction) and OUT/reports/<series>/ (each folder moved into place whole).

A row is keyed by SeriesInstanceUID and ``models_key`` (the SHA256s of the models and the
options that decide a verdict), so a rerun with the same models skips what is finished and a rerun
with other models screens everything again beside it. Only the driver writes the table."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from PETriageLib.triage.worklist import WorklistEntry, rank_worklist

STATUSES = ("done", "skipped", "failed")  # triaged; refused by the gate (the reason); could not be screened
FINISHED = ("done", "skipped")  # a rerun with the same models does not screen these again

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT NOT NULL, models_key TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,
    attempts INTEGER NOT NULL, entry TEXT NOT NULL, timings TEXT NOT NULL, seconds REAL, worker TEXT,
    updated REAL NOT NULL, PRIMARY KEY (series_uid, models_key));
CREATE TABLE IF NOT EXISTS models (models_key TEXT PRIMARY KEY, models TEXT NOT NULL);
"""


@dataclass(frozen=True)
class SeriesOutcome:
    """How one series ended: ``status`` in STATUSES, its worklist entry, where the time went."""

    series_uid: str
    status: str
    entry: WorklistEntry
    attempts: int = 1
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step (reading, lungs, stages, ...)
    seconds: float = 0.0
    worker: str = ""
    # wall clock (time.time) when reading began, reading ended and triage ended; not stored
    timeline: tuple[float, float, float] | None = None

    @property
    def reason(self) -> str | None:
        return self.entry.reason


def status_of(entry: WorklistEntry) -> str:
    """done (a verdict), skipped (the gate refused the series) or failed (an error)."""
    return {"error": "failed", "not_analysable": "skipped"}.get(entry.verdict, "done")


def publish_report(staged: Path, final: Path) -> Path:
    """Move a fully written report folder into place, replacing an earlier attempt's."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staged, final)
    return final


class ResultStore:
    """OUT/results.sqlite and OUT/reports/ of one output folder."""

    def __init__(self, out_dir: "str | Path") -> None:
        self.out_dir = Path(out_dir).resolve()  # workers (other processes, other nodes) get absolute paths
        self.reports = self.out_dir / "reports"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / "results.sqlite"
        self.db = sqlite3.connect(self.path)
        with self.db:
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def register_models(self, models_key: str, models: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO models VALUES (?, ?)", (models_key, json.dumps(models)))

    def finished(self, models_key: str) -> set[str]:
        """Series UIDs done or skipped with these models."""
        rows = self.db.execute(f"SELECT series_uid FROM series WHERE models_key = ? AND status IN "
                               f"({','.join('?' * len(FINISHED))})", (models_key, *FINISHED))
        return {r[0] for r in rows}

    def attempts(self, models_key: str, series_uid: str) -> int:
        row = self.db.execute("SELECT attempts FROM series WHERE models_key = ? AND series_uid = ?",
                              (models_key, series_uid)).fetchone()
        return 0 if row is None else int(row[0])

    def record(self, models_key: str, outcome: SeriesOutcome) -> None:
        """One series' outcome, in one transaction; attempts add up over reruns."""
        if outcome.status not in STATUSES:
            raise ValueError(f"unknown series status {outcome.status!r}")
        before = self.attempts(models_key, outcome.series_uid)
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (outcome.series_uid, models_key, outcome.status, outcome.reason,
                             before + outcome.attempts, json.dumps(outcome.entry.to_dict()),
                             json.dumps(outcome.timings), outcome.seconds, outcome.worker, time.time()))

    def outcomes(self, models_key: str, series_uids: "Iterable[str] | None" = None) -> list[SeriesOutcome]:
        """The stored outcomes with these models (of ``series_uids`` only, when given)."""
        rows = self.db.execute("SELECT series_uid, status, attempts, entry, timings, seconds, worker FROM series "
                               "WHERE models_key = ? ORDER BY series_uid", (models_key,)).fetchall()
        wanted = None if series_uids is None else set(series_uids)
        return [SeriesOutcome(uid, status, WorklistEntry(**json.loads(entry)), attempts, json.loads(timings),
                              seconds or 0.0, worker or "")
                for uid, status, attempts, entry, timings, seconds, worker in rows
                if wanted is None or uid in wanted]

    def worklist(self, models_key: str, series_uids: "Sequence[str] | None" = None) -> list[WorklistEntry]:
        """Every stored series with these models, ranked (done by PE score, then skipped and failed)."""
        return rank_worklist([o.entry for o in self.outcomes(models_key, series_uids)])
