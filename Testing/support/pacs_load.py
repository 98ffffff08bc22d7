"""N phantom studies C-STOREd by a real Orthanc to `petriage listen` over concurrent associations
(Orthanc jobs), timed from the first send to the last result stored back, and what the queue and
Orthanc say afterwards: lost, incomplete, triaged twice. Shared by benchmarks/pacs_load.py and
Testing/pacs/test_twenty_studies.py."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PETriageLib.phantom import generate_study, write_study


@dataclass(frozen=True)
class LoadResult:
    studies: int
    seconds: float
    studies_per_minute: float
    listener_peak_rss_mib: int
    lost: int  # studies the queue never saw
    triaged_twice: int  # triaged more than once, or as a second version
    incomplete: int  # triaged with fewer (or more) instances than were sent
    srs_in_orthanc: int  # PETriage SRs back in the studies in Orthanc (one each)
    max_associations: int  # the most associations open at once, from the listener's log
    jobs_failed: int  # Orthanc store jobs that did not end in Success

    @property
    def ok(self) -> bool:
        return self.lost == self.triaged_twice == self.incomplete == self.jobs_failed == 0 and \
            self.srs_in_orthanc == self.studies

    def as_dict(self) -> dict:
        return asdict(self)


def upload_phantom_studies(orthanc, work: Path, count: int, matrix: int, slices: int, seed0: int = 100) -> list[str]:
    """``count`` phantom studies (every other one with PE) uploaded to Orthanc; their Orthanc study ids."""
    ids = []
    for n in range(count):
        d = write_study(generate_study(seed0 + n, matrix=matrix, slices=slices, pe=n % 2 == 0),
                        work / f"study{n}")["series_dir"]
        instances = orthanc.upload(sorted(d.glob("*.dcm")))
        ids.append(orthanc.request("GET", f"/instances/{instances[0]}/study")["ID"])
    return ids


def max_open_associations(log: str) -> int:
    """The most associations open at once, from pynetdicom's accept/release log lines."""
    open_now = peak = 0
    for line in log.splitlines():
        if "Accepting Association" in line:
            open_now += 1
            peak = max(peak, open_now)
        elif "Association Released" in line or "Association Aborted" in line:
            open_now -= 1
    return peak


def send_and_wait(orthanc, listener, study_ids: list[str], slices: int, timeout_s: float) -> LoadResult:
    """Start one Orthanc store job per study at once, wait until every study's results are sent back."""
    t0 = time.perf_counter()
    jobs = [orthanc.store_to("petriage", [sid], wait=False)["ID"] for sid in study_ids]
    listener.wait_for("SELECT 1 WHERE (SELECT COUNT(*) FROM series WHERE send_state='sent') >= ?",
                      (len(study_ids),), timeout_s=timeout_s, poll_s=0.5)
    seconds = time.perf_counter() - t0
    runs = listener.query("SELECT triage_runs, version, (SELECT COUNT(*) FROM instances i "
                          "WHERE i.series_uid=s.series_uid) FROM series s")
    srs = sum(1 for sid in study_ids for s in orthanc.request("GET", f"/studies/{sid}/series")
              if s["MainDicomTags"].get("Modality") == "SR")
    failed = sum(orthanc.request("GET", f"/jobs/{j}")["State"] != "Success" for j in jobs)
    return LoadResult(studies=len(study_ids), seconds=round(seconds, 1),
                      studies_per_minute=round(len(study_ids) / seconds * 60, 2),
                      listener_peak_rss_mib=round(listener.peak_rss_mb()), lost=len(study_ids) - len(runs),
                      triaged_twice=sum(r[0] != 1 or r[1] != 1 for r in runs),
                      incomplete=sum(r[2] != slices for r in runs), srs_in_orthanc=srs,
                      max_associations=max_open_associations(listener.log_path.read_text(errors="replace")),
                      jobs_failed=failed)
