"""`petriage listen` between a real Orthanc and itself: the study goes out by C-STORE from Orthanc,
the results come back into the same study in Orthanc; refusals; SIGKILL at the worst moments."""
from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from PETriageLib.cli import main
from PETriageLib.reporting.dicom_sr import read_verdict
from support.listener import LISTENER_AET
from support.mixed_study import COMPRESSED, mixed_study

SR, SC, PM = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.30"


def series_state(listener, series_uid):
    return listener.query("SELECT state, reason, verdict, send_state, triage_runs, version FROM series "
                          "WHERE series_uid=?", (series_uid,))


def results_in_orthanc(orthanc, study_uid) -> dict[str, list[pydicom.Dataset]]:
    """Every PETriage object Orthanc holds in the study, by SOP class."""
    found: dict[str, list[pydicom.Dataset]] = {}
    for series in orthanc.series_of_study(study_uid):
        for inst in series["Instances"]:
            ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(inst)))
            if ds.get("Manufacturer") == "PETriage":
                found.setdefault(str(ds.SOPClassUID), []).append(ds)
    return found


@pytest.fixture(scope="module")
def sent_study(orthanc, start_listener, tmp_path_factory):
    """The mixed study uploaded to Orthanc and C-STOREd by Orthanc to a running listener, triaged and sent back."""
    work = tmp_path_factory.mktemp("e2e")
    study = mixed_study(11, work / "study", compress=True)
    orthanc.upload(study.files)
    listener = start_listener(work / "spool")
    study_id = orthanc.request("POST", "/tools/lookup", raw=study.study_uid.encode())[0]["ID"]
    orthanc.store_to("petriage", [study_id])
    ct_series = str(pydicom.dcmread(study.ct[0]).SeriesInstanceUID)
    listener.wait_for("SELECT 1 FROM series WHERE series_uid=? AND send_state='sent'", (ct_series,))
    listener.wait_for("SELECT 1 WHERE (SELECT COUNT(*) FROM series WHERE state IN ('done', 'skipped')) = 3")
    return study, listener, ct_series


def test_results_come_back_into_the_study_and_the_sr_says_the_verdict(sent_study, orthanc):
    study, listener, ct_series = sent_study
    state, reason, verdict, send_state, runs, version = series_state(listener, ct_series)[0]
    assert (state, send_state, runs, version) == ("done", "sent", 1, 1)
    found = results_in_orthanc(orthanc, study.study_uid)
    assert set(found) == {SR, SC, PM}
    assert len(found[SR]) == 1 and len(found[SC]) == 2 and len(found[PM]) == 2  # --top-k 2; two branches
    sr = found[SR][0]
    assert read_verdict(sr) == verdict and verdict in ("pe_suspected", "other_disease", "no_finding")
    ct_uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in study.ct}
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == ct_uids  # the corrupt instance was left out, the rest all referenced
    for sc in found[SC]:
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in ct_uids
    for pm in found[PM]:
        assert pm.NumberOfFrames == 16 and pm.FrameOfReferenceUID == pydicom.dcmread(study.ct[0]).FrameOfReferenceUID
    assert {ds.StudyInstanceUID for group in found.values() for ds in group} == {study.study_uid}


def test_mr_localizer_and_corrupt_file_are_skipped_with_reasons(sent_study):
    study, listener, ct_series = sent_study
    mr_series = str(pydicom.dcmread(study.mr).SeriesInstanceUID)
    assert series_state(listener, mr_series)[0][:3] == ("skipped", "not a CT series (modality MR)", None)
    state, reason, verdict = series_state(listener, str(pydicom.dcmread(study.localizer).SeriesInstanceUID))[0][:3]
    assert (state, verdict) == ("skipped", "not_analysable") and reason.startswith("not an axial series"), reason
    corrupt_uid = str(pydicom.dcmread(study.corrupt).SOPInstanceUID)
    (skipped,) = listener.query("SELECT skipped FROM instances WHERE sop_uid=?", (corrupt_uid,))[0]
    assert skipped.startswith("pixel data cannot be decoded")
    assert listener.query("SELECT COUNT(*) FROM instances WHERE series_uid=? AND skipped IS NULL",
                          (ct_series,))[0][0] == 16


def test_compressed_transfer_syntaxes_are_received_as_sent(sent_study):
    study, listener, ct_series = sent_study
    paths = [p for (p,) in listener.query("SELECT path FROM instances WHERE series_uid=? AND skipped IS NULL",
                                          (ct_series,))]
    syntaxes = [pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in paths]
    assert sorted(map(str, set(syntaxes))) == sorted(map(str, {*COMPRESSED, ExplicitVRLittleEndian}))
    assert all(syntaxes.count(ts) == 3 for ts in COMPRESSED)


def test_queue_command_lists_states_reasons_and_the_worklist(sent_study, capsys):
    study, listener, ct_series = sent_study
    assert main(["queue", str(listener.spool)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "receiving 0  waiting 0  triaging 0  done 1  skipped 2  failed 0"
    assert "reason: not a CT series (modality MR)" in out and "1 instance(s) skipped" in out
    assert "results sent" in out and "worklist (most urgent first):\n  1. " in out


def test_the_same_series_sent_again_is_not_triaged_again(sent_study, orthanc):
    study, listener, ct_series = sent_study
    series_id = orthanc.request("POST", "/tools/lookup", raw=ct_series.encode())[0]["ID"]
    orthanc.store_to("petriage", [series_id])
    import time

    time.sleep(3)  # two settle times: a re-triage would have been claimed by now
    assert series_state(listener, ct_series)[0][4:] == (1, 1)  # one triage run, version 1
    assert len(results_in_orthanc(orthanc, study.study_uid)[SR]) == 1


def test_an_unknown_calling_ae_title_is_rejected(sent_study):
    listener = sent_study[1]
    for calling, accepted in (("INTRUDER", False), ("ORTHANC", True)):
        ae = AE(ae_title=calling)
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
        assert assoc.is_established is accepted and assoc.is_rejected is not accepted
        if accepted:
            assert assoc.send_c_echo().Status == 0x0000
            assoc.release()
