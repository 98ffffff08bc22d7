"""Nothing lost across SIGKILL: killed after half a series arrived, then killed during its triage;
after each restart the series is completed and triaged once to the end. Its results cannot be sent
at first (the destination is down): they stay queued, are retried, and arrive as one set once the
destination is up. (One scenario, not three tests: each listener start costs seconds.)"""
from __future__ import annotations

import io

import pydicom

from support.mixed_study import mixed_study
from support.orthanc import free_port, start_orthanc

SETTLE_S = 3.0  # longer than a restart's C-ECHO round trip, so a resent series settles only once complete


def manufacturer_objects(orthanc, study_uid) -> list[pydicom.Dataset]:
    out = []
    for series in orthanc.series_of_study(study_uid):
        for inst in series["Instances"]:
            ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(inst)), stop_before_pixels=True)
            if ds.get("Manufacturer") == "PETriage":
                out.append(ds)
    return out


def test_killed_while_receiving_then_while_triaging_then_sent_once_the_destination_is_up(orthanc, start_listener,
                                                                                        tmp_path):
    study = mixed_study(12, tmp_path / "study")
    ids = orthanc.upload(study.ct)
    series_uid = str(pydicom.dcmread(study.ct[0]).SeriesInstanceUID)
    spool, late_port = tmp_path / "spool", free_port()
    late = f"ORTHANC@127.0.0.1:{late_port}"  # where results go: nothing listens there yet

    first = start_listener(spool, settle_s=SETTLE_S, destination=late)
    orthanc.store_to("petriage", ids[:8])
    first.wait_for("SELECT 1 WHERE (SELECT COUNT(*) FROM instances WHERE series_uid=?) = 8", (series_uid,))
    first.kill()
    assert first.query("SELECT state FROM series")[0][0] == "receiving"

    second = start_listener(spool, settle_s=SETTLE_S, destination=late)
    orthanc.store_to("petriage", ids)  # the sender retries the whole series; 8 are duplicates
    second.wait_for("SELECT 1 FROM series WHERE state='triaging'", poll_s=0.01)
    second.kill()
    assert second.query("SELECT state, triage_runs FROM series")[0] == ("triaging", 1)

    third = start_listener(spool, settle_s=SETTLE_S, destination=late)
    third.wait_for("SELECT 1 FROM series WHERE state='done' AND send_attempts>=2 AND send_state='pending'")
    state, runs, version, n, error = third.query(
        "SELECT state, triage_runs, version, (SELECT COUNT(*) FROM instances), send_error FROM series")[0]
    assert (state, runs, version, n) == ("done", 2, 1, 16) and error.startswith("no association with")
    assert "was being triaged when the listener stopped: triaged again" in third.log()
    assert len(list((spool / "instances").rglob("*.dcm"))) == 16

    destination = start_orthanc(tmp_path / "late-orthanc", dicom_port=late_port)
    try:
        third.wait_for("SELECT 1 FROM series WHERE send_state='sent'", timeout_s=60)
        objects = manufacturer_objects(destination, study.study_uid)
    finally:
        destination.stop()
    classes = sorted(str(ds.SOPClassUID) for ds in objects)
    assert classes.count("1.2.840.10008.5.1.4.1.1.88.33") == 1 and len(classes) == 5  # SR, 2 key images, 2 maps
