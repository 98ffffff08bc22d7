"""Nothing lost across SIGKILL: killed after half a series arrived, then killed during its triage;
after each restart the series is completed, triaged once to the end, and one set of results is in
Orthanc. Results that cannot be sent stay queued and arrive once the destination is up."""
from __future__ import annotations

import io

import pydicom

from pacs.conftest import mixed_study
from support.orthanc import free_port, start_orthanc

SETTLE_S = 4.0  # longer than a restart's C-ECHO round trip, so a resent series settles only once complete


def manufacturer_objects(orthanc, study_uid) -> list[pydicom.Dataset]:
    out = []
    for series in orthanc.series_of_study(study_uid):
        for inst in series["Instances"]:
            ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(inst)), stop_before_pixels=True)
            if ds.get("Manufacturer") == "PETriage":
                out.append(ds)
    return out


def test_killed_while_receiving_and_while_triaging_gives_one_set_of_results(orthanc, start_listener, tmp_path):
    study = mixed_study(12, tmp_path / "study")
    ids = orthanc.upload(study.ct)
    series_uid = str(pydicom.dcmread(study.ct[0]).SeriesInstanceUID)
    spool = tmp_path / "spool"

    first = start_listener(spool, settle_s=SETTLE_S)
    orthanc.store_to("petriage", ids[:8])
    first.wait_for("SELECT 1 WHERE (SELECT COUNT(*) FROM instances WHERE series_uid=?) = 8", (series_uid,))
    first.kill()
    assert first.query("SELECT state FROM series")[0][0] == "receiving"

    second = start_listener(spool, settle_s=SETTLE_S)
    orthanc.store_to("petriage", ids)  # the sender retries the whole series; 8 are duplicates
    second.wait_for("SELECT 1 FROM series WHERE state='triaging'", poll_s=0.01)
    second.kill()
    assert second.query("SELECT state, triage_runs FROM series")[0] == ("triaging", 1)

    third = start_listener(spool, settle_s=SETTLE_S)
    third.wait_for("SELECT 1 FROM series WHERE send_state='sent'")
    state, runs, version, n = third.query(
        "SELECT state, triage_runs, version, (SELECT COUNT(*) FROM instances) FROM series")[0]
    assert (state, runs, version, n) == ("done", 2, 1, 16)
    assert "was being triaged when the listener stopped: triaged again" in third.log()
    assert len(list((spool / "instances").rglob("*.dcm"))) == 16
    objects = manufacturer_objects(orthanc, study.study_uid)
    classes = sorted(str(ds.SOPClassUID) for ds in objects)
    assert classes.count("1.2.840.10008.5.1.4.1.1.88.33") == 1 and len(classes) == 5  # SR, 2 key images, 2 maps


def test_results_wait_for_an_unreachable_destination_and_are_sent_when_it_is_up(start_listener, tmp_path,
                                                                               orthanc):
    study = mixed_study(13, tmp_path / "study")
    ids = orthanc.upload(study.ct)
    later_port = free_port()
    listener = start_listener(tmp_path / "spool", destination=f"ORTHANC@127.0.0.1:{later_port}")
    orthanc.store_to("petriage", ids)
    listener.wait_for("SELECT 1 FROM series WHERE state='done' AND send_attempts>=2 AND send_state='pending'")
    (error,) = listener.query("SELECT send_error FROM series")[0]
    assert "no association" in error
    destination = start_orthanc(tmp_path / "late-orthanc", dicom_port=later_port)
    try:
        listener.wait_for("SELECT 1 FROM series WHERE send_state='sent'", timeout_s=60)
        assert len(manufacturer_objects(destination, study.study_uid)) == 5
    finally:
        destination.stop()
