"""The triage result as a DICOM Comprehensive SR in the source study: the verdict and its reason,
the scores, the slices that drove the verdict (referencing their CT instances), the models with
their SHA256, the domain check and the research-software statement."""
from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from highdicom.sr import (CodedConcept, CodeContentItem, ContainerContentItem, ImageContentItem,
                          NumContentItem, RelationshipTypeValues, TextContentItem)

from PETriageLib.reporting.dicom_source import (DISCLAIMER, MANUFACTURER, SERIES_NUMBERS, SourceSeries)
from PETriageLib.triage.result import TriageResult
from PETriageLib.triage.verdict import SliceRow

SCHEME = "99PETRIAGE"  # private coding scheme ("99" prefix) for the concepts DICOM has no code for
MAX_KEY_SLICES = 10
CONTAINS = RelationshipTypeValues.CONTAINS
UNITLESS = CodedConcept("1", "UCUM", "no units")


def code(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, SCHEME, meaning)


TITLE = CodedConcept("18748-4", "LN", "Diagnostic imaging report")
FINDING = CodedConcept("121071", "DCM", "Finding")
REASON = code("reason", "Reason for the verdict")
PE_SCORE = code("pe_score", "PE score")
DISEASE_SCORE = code("disease_score", "Disease score")
PATIENT_PROBABILITY = code("patient_probability", "Patient classifier probability of PE")
KEY_SLICE = code("key_slice", "Slice that drove the verdict")
SLICE_LABEL = code("slice_label", "Slice label")
P_PE = code("p_pe", "Slice probability of PE")
P_DISEASE = code("p_disease", "Slice probability of disease")
SOURCE_IMAGE = CodedConcept("121112", "DCM", "Source of Measurement")
MODEL = code("model", "Model")
DOMAIN_CHECK = code("domain_check", "Domain check")
STATEMENT = code("statement", "Intended use statement")
VERDICT_MEANINGS = {"pe_suspected": "Pulmonary embolism suspected", "other_disease": "Other disease",
                    "no_finding": "No finding", "not_analysable": "Not analysable"}


def key_slices(result: TriageResult, limit: int = MAX_KEY_SLICES) -> list[SliceRow]:
    """The slices that drove the verdict: every PE slice, else the diseased ones, by descending score."""
    analysed = [r for r in result.rows if r.label is not None]
    for label, score in (("pe", "p_pe"), ("other", "p_disease")):
        hits = [r for r in analysed if r.label == label]
        if hits:
            return sorted(hits, key=lambda r: -(getattr(r, score) or 0.0))[:limit]
    return []


def _num(name: CodedConcept, value: float | None) -> list[NumContentItem]:
    return [] if value is None else [NumContentItem(name, float(value), UNITLESS, relationship_type=CONTAINS)]


def _slice_item(row: SliceRow, source: SourceSeries) -> ContainerContentItem:
    ds = source.datasets[row.index]
    item = ContainerContentItem(KEY_SLICE, relationship_type=CONTAINS)
    item.ContentSequence = [
        ImageContentItem(SOURCE_IMAGE, ds.SOPClassUID, ds.SOPInstanceUID, relationship_type=CONTAINS),
        TextContentItem(SLICE_LABEL, f"{row.label} (slice {row.index}, z {row.z:.1f} mm)",
                        relationship_type=CONTAINS),
        *_num(P_PE, row.p_pe), *_num(P_DISEASE, row.p_disease)]
    return item


def _models_text(result: TriageResult) -> list[TextContentItem]:
    return [TextContentItem(MODEL, f"stage {m.stage}: {m.name} ({m.architecture}), threshold {m.threshold:.4g}, "
                                   f"sha256 {m.sha256 or 'unknown'}", relationship_type=CONTAINS)
            for m in result.models]


def _domain_text(result: TriageResult) -> str:
    d = result.domain
    if d is None:
        return "not run"
    if d.in_domain:
        return f"in domain: feature distance {d.score:.0f} within {d.threshold:.0f} ({d.model})"
    return f"out of domain: {d.reason()}"


def build_sr(result: TriageResult, source: SourceSeries) -> hd.sr.ComprehensiveSR:
    """A Comprehensive SR (new series, new UIDs) in the source study."""
    v = result.verdict
    root = ContainerContentItem(TITLE)
    root.ContentSequence = [
        CodeContentItem(FINDING, code(v.verdict, VERDICT_MEANINGS.get(v.verdict, v.verdict)),
                        relationship_type=CONTAINS),
        TextContentItem(REASON, v.reason[:1024] or "none given", relationship_type=CONTAINS),
        *_num(PE_SCORE, v.pe_score), *_num(DISEASE_SCORE, v.disease_score),
        *_num(PATIENT_PROBABILITY, v.patient_probability),
        *(_slice_item(r, source) for r in key_slices(result)),
        *_models_text(result),
        TextContentItem(DOMAIN_CHECK, _domain_text(result)[:1024] or "not run", relationship_type=CONTAINS),
        TextContentItem(STATEMENT, DISCLAIMER, relationship_type=CONTAINS),
    ]
    sr = hd.sr.ComprehensiveSR(
        evidence=source.datasets, content=root, series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["sr"], sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, series_description="PETriage PE triage report")
    scheme = Dataset()  # says what the private scheme is, for a reader that meets it
    scheme.CodingSchemeDesignator, scheme.CodingSchemeName = SCHEME, "PETriage triage concepts"
    scheme.CodingSchemeResponsibleOrganization = "PETriage project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def read_verdict(sr) -> str:
    """The verdict code an SR written by ``build_sr`` carries (the consumer's way back in)."""
    for item in sr.ContentSequence:
        name = item.ConceptNameCodeSequence[0]
        if item.ValueType == "CODE" and (name.CodeValue, name.CodingSchemeDesignator) == ("121071", "DCM"):
            return str(item.ConceptCodeSequence[0].CodeValue)
    raise ValueError(f"SR {sr.SOPInstanceUID} has no Finding item")
