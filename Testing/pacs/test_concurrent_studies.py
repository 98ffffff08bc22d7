"""Several studies at once: Orthanc sends four studies as four concurrent C-STORE jobs (four
associations); every one is triaged once and its results come back, none lost or mixed up.
test_twenty_studies.py does it with 20 studies; benchmarks/pacs_load.py prints the rate."""
from __future__ import annotations

import pydicom

from PETriageLib.phantom import generate_study, write_study
from support.pacs_load import max_open_associations

STUDIES = 4


def test_four_studies_over_four_associations_are_each_triaged_once(orthanc, start_listener, tmp_path):
    studies = {}
    for n in range(STUDIES):
        files = sorted(write_study(generate_study(40 + n, matrix=128, slices=16, pe=n % 2 == 0),
                                   tmp_path / f"s{n}")["series_dir"].glob("*.dcm"))
        ids = orthanc.upload(files)
        studies[str(pydicom.dcmread(files[0]).StudyInstanceUID)] = orthanc.request(
            "GET", f"/instances/{ids[0]}/study")["ID"]
    listener = start_listener(tmp_path / "spool")
    jobs = [orthanc.store_to("petriage", [sid], wait=False)["ID"] for sid in studies.values()]
    assert len(set(jobs)) == STUDIES  # one Orthanc job each; the fixture's Orthanc runs four at once
    listener.wait_for("SELECT 1 WHERE (SELECT COUNT(*) FROM series WHERE send_state='sent') = ?", (STUDIES,))
    rows = listener.query("SELECT s.study_uid, s.triage_runs, s.version, COUNT(i.sop_uid) FROM series s "
                          "JOIN instances i ON i.series_uid = s.series_uid GROUP BY s.series_uid")
    assert sorted(rows) == sorted((uid, 1, 1, 16) for uid in studies)
    for uid, sid in studies.items():
        modalities = sorted(s["MainDicomTags"].get("Modality") for s in orthanc.request("GET", f"/studies/{sid}/series"))
        assert modalities == ["CT", "OT", "OT", "SR"], uid  # the CT and one set of results, in its own study
    assert all(orthanc.request("GET", f"/jobs/{j}")["State"] == "Success" for j in jobs)
    assert max_open_associations(listener.log_path.read_text()) >= 2  # 4 when the jobs start together

