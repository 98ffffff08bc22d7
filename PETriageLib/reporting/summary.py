"""summary.md: a triage result in words, for the person who reads the report folder."""
from __future__ import annotations

from typing import Mapping, Sequence

from PETriageLib.triage.result import TriageResult
from PETriageLib.triage.verdict import SliceRow


def _ranges_text(ranges: Sequence[Sequence[int]], rows: Sequence[SliceRow]) -> str:
    if not ranges:
        return "none"
    return ", ".join(f"{a}-{b} (z {rows[a].z:.1f} to {rows[b].z:.1f} mm)" for a, b in ranges)


def _domain_text(result: TriageResult) -> str:
    domain, stage1 = result.domain, result.model(1)
    if domain is None:
        if result.options.domain_check == "off":
            why = "off"
        elif stage1 is None or stage1.domain_threshold is None:
            why = "the stage 1 checkpoint has no feature statistics (petriage fit-domain)"
        else:
            why = "no slice was analysed"
        return f"Domain check: not run ({why})"
    verdict = "like the training data" if domain.in_domain else "UNLIKE the training data"
    return (f"Domain check: {verdict} (feature distance {domain.score:.0f}, limit {domain.threshold:.0f}, "
            f"{domain.slices} slices)")


def clot_text(result: TriageResult) -> str:
    """The clot line of the issue #24 contract (the segmentation ran)."""
    e = result.embolus
    if e is None or not e.slices:
        return "No clot segmented"
    return f"Clot volume: {e.volume_ml:.1f} mL on slices {e.slices[0]}-{e.slices[-1]} ({len(e.slices)} slices)"


def _embolus_lines(result: TriageResult) -> list[str]:
    """The pathway and the clot, only where they differ from a plain CTPA cascade run."""
    lines = []
    if result.phase is not None and (result.phase.used == "nct" or result.embolus is not None):
        lines.append(f"- Pathway: {result.phase.used} ({result.phase.reason})")
    if result.embolus is not None:
        e = result.embolus
        lines += [f"- {clot_text(result)}",
                  f"- Embolus segmentation: model {e.model}, {e.pathway} pathway, threshold {e.threshold:g}, "
                  f"max p {e.max_probability:.3f}, {e.n_components} component(s)"]
        for lesion, other in e.others.items():
            where = (f"{other.volume_ml:.1f} mL on slices {other.slices[0]}-{other.slices[-1]} "
                     f"({len(other.slices)} slices)" if other.slices else "none segmented")
            lines.append(f"- {lesion.capitalize()} lung disease (same model, p >= {other.threshold:g}): {where}, "
                         f"{other.n_components} component(s)")
    return lines


def summary_markdown(result: TriageResult, file_names: Sequence[str] = (),
                     timings: Mapping[str, float] | None = None) -> str:
    """summary.md: the verdict and why, the models, timings (default the result's), files, warnings."""
    timings = result.timings if timings is None else timings
    v, s = result.verdict, result.series_info()
    lines = [
        f"# PETriage: {v.verdict.replace('_', ' ')}",
        "",
        f"- Reason: {v.reason}",
        f"- Series: {s.get('series_description') or ''} (patient {s.get('patient_id') or '?'}, "
        f"study date {s.get('study_date') or '?'}), {result.volume.num_slices} slices",
        f"- Rule: {v.rule}; thresholds p_disease >= {v.threshold_disease:g}, p_pe >= {v.threshold_pe:g}"
        + (f" (patient rule {result.options.patient_rule})" if result.options.patient_rule else ""),
    ]
    if v.verdict != "not_analysable":
        top = "none" if v.max_pe_slice is None else \
            f"slice {v.max_pe_slice} (z {result.rows[v.max_pe_slice].z:.1f} mm)"
        lines += [
            f"- PE score {v.pe_score:.3f}, disease score {v.disease_score:.3f}; highest p_pe at {top}",
            *([f"- Patient classifier p(PE) {v.patient_probability:.3f} (threshold {v.patient_threshold:.3f})"]
              if v.patient_probability is not None else []),
            f"- PE slices: {_ranges_text(v.pe_ranges, result.rows)}",
            f"- Diseased slices: {_ranges_text(v.disease_ranges, result.rows)}",
            f"- Slice counts: {', '.join(f'{k} {n}' for k, n in v.counts.items())}",
        ]
    lines += _embolus_lines(result)
    lines += ["", "## Models", ""]
    lines += [f"- stage {m.stage}: {m.name} ({m.architecture}), sha256 {m.sha256}" for m in result.models]
    lines += [f"- {_domain_text(result)}"]
    lines += ["", "## Timings (s)", "", ", ".join(f"{k} {t:.2f}" for k, t in timings.items())]
    lines += ["", "## Files", ""] + [f"- {name}" for name in file_names]
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result.warnings]
    lines += ["", "Research software: not a medical device; every result needs a radiologist's review."]
    return "\n".join(lines) + "\n"


