"""DICOM results (SR, key images, parametric maps) of a triaged phantom: valid by dciodvfy, in the
source study, referencing the source instances, carrying the verdict and the heatmaps exactly."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from PETriageLib.reporting.dicom_results import write_dicom_results
from PETriageLib.reporting.dicom_sr import key_slices, read_verdict
from PETriageLib.screening.one_series import ScreenOptions, screen_files
from PETriageLib.triage.cascade import build_cascade
from support.dciodvfy import dciodvfy


@pytest.fixture(scope="module")
def screened(phantom_series_dir, tiny_checkpoints):
    cascade = build_cascade(str(tiny_checkpoints[0]), str(tiny_checkpoints[1]), device="cpu",
                            threshold_disease=0.0, threshold_pe=0.0, domain_check="off")
    return screen_files(cascade, phantom_series_dir, options=ScreenOptions(top_k=3))


@pytest.fixture(scope="module")
def written(screened, tmp_path_factory):
    return write_dicom_results(screened.result, screened.heatmaps, tmp_path_factory.mktemp("dicom"))


@pytest.mark.parametrize("kind", ["sr", "key_images", "heatmaps"])
def test_every_object_passes_dciodvfy(written, kind):
    files = [written.sr] if kind == "sr" else getattr(written, kind)
    assert files
    for path in files:
        check = dciodvfy(path)
        assert check.errors == [], check.output


def test_objects_are_new_series_of_the_source_study(written, screened):
    src = [pydicom.dcmread(p, stop_before_pixels=True) for p in screened.result.volume.file_paths]
    objs = [pydicom.dcmread(p) for p in written.files]
    assert {o.StudyInstanceUID for o in objs} == {src[0].StudyInstanceUID}
    assert {o.PatientID for o in objs} == {src[0].PatientID}
    series = {o.SeriesInstanceUID for o in objs}
    assert len(series) == 3 and src[0].SeriesInstanceUID not in series
    sops = [o.SOPInstanceUID for o in objs]
    assert len(set(sops)) == len(sops) and not set(sops) & {s.SOPInstanceUID for s in src}
    assert {o.Modality for o in objs} == {"SR", "OT"}


def test_sr_carries_verdict_scores_references_models_and_statement(written, screened):
    result = screened.result
    sr = pydicom.dcmread(written.sr)
    assert read_verdict(sr) == result.verdict.verdict == "pe_suspected"  # thresholds 0: every slice is PE
    items = {it.ConceptNameCodeSequence[0].CodeValue: it for it in sr.ContentSequence}
    assert items["reason"].TextValue == result.verdict.reason
    assert float(items["pe_score"].MeasuredValueSequence[0].NumericValue) == pytest.approx(result.verdict.pe_score,
                                                                                         abs=1e-6)
    models = [it.TextValue for it in sr.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "model"]
    assert len(models) == 2 and all(m.sha256 in t for m, t in zip(result.models, models))
    assert "not a medical device" in items["statement"].TextValue
    assert items["domain_check"].TextValue == "not run"
    refs = [c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for it in sr.ContentSequence
            if it.ValueType == "CONTAINER" for c in it.ContentSequence if c.ValueType == "IMAGE"]
    assert refs == [result.volume.instance_uids[r.index] for r in key_slices(result)] and refs
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == set(result.volume.instance_uids)


def test_key_images_show_the_heatmap_and_reference_their_slice(written, screened):
    result, heat = screened.result, screened.heatmaps
    assert len(written.key_images) == len(heat.slices) == 3
    by_uid = dict(zip(result.volume.instance_uids, range(result.volume.num_slices)))
    seen = set()
    for path in written.key_images:
        im = pydicom.dcmread(path)
        k = by_uid[im.SourceImageSequence[0].ReferencedSOPInstanceUID]
        seen.add(k)
        rows, cols = result.volume.hu.shape[1:]
        assert im.pixel_array.shape == (rows, cols * len(heat.volumes), 3)
        hot = heat.volumes[next(iter(heat.volumes))][k] >= 0.05
        panel = im.pixel_array[:, :cols].astype(int)
        grey = panel[..., 0] == panel[..., 1]
        assert hot.any() and not grey[hot].all() and grey[~hot].all()  # colour exactly where the heat is
    assert seen == set(heat.slices)


def test_parametric_maps_lie_on_the_source_geometry(written, screened):
    heat, src = screened.heatmaps, [pydicom.dcmread(p, stop_before_pixels=True)
                                    for p in screened.result.volume.file_paths]
    assert [p.name for p in written.heatmaps] == [f"heatmap_{b}.dcm" for b in heat.volumes]
    for path, volume in zip(written.heatmaps, heat.volumes.values()):
        pm = pydicom.dcmread(path)
        assert pm.NumberOfFrames == len(src) and pm.FrameOfReferenceUID == src[0].FrameOfReferenceUID
        # highdicom may order the frames along its own dimension index: match each frame by its position
        z_of_src = [float(s.ImagePositionPatient[2]) for s in src]
        frames = pm.PerFrameFunctionalGroupsSequence
        k_of_frame = [z_of_src.index(float(f.PlanePositionSequence[0].ImagePositionPatient[2])) for f in frames]
        assert sorted(k_of_frame) == list(range(len(src)))
        for f, k in zip(frames, k_of_frame):
            assert [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient] == pytest.approx(
                [float(v) for v in src[k].ImagePositionPatient], abs=1e-4)
            assert f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == src[k].SOPInstanceUID
        rwv = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        values = pm.pixel_array * float(rwv.RealWorldValueSlope) + float(rwv.RealWorldValueIntercept)
        assert np.abs(values - volume[k_of_frame]).max() <= 0.5 / 1000 + 1e-6 and volume.max() > 0.05


def test_a_refused_series_gets_no_dicom_objects(screened, tmp_path):
    from dataclasses import replace

    refused = replace(screened.result, verdict=replace(screened.result.verdict, verdict="not_analysable"))
    assert write_dicom_results(refused, screened.heatmaps, tmp_path).files == []
    assert list(tmp_path.iterdir()) == []
