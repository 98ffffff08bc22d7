"""The archive the cluster suites screen, and how two worklists are compared."""
from __future__ import annotations

from PETriageLib.screening.one_series import ScreenOptions

PHANTOMS = 8
REFUSED = 2  # an MR series (modality) and a 4-slice CT (the eligibility gate)
# Grad-CAM on 2 slices and no key images keep every series to about a second
OPTIONS = ScreenOptions(top_k=2, key_images=False)


def assert_same_worklist(entries, reference) -> None:
    """Same series, verdicts and reasons, probabilities within 1e-5, scored series in the same order."""
    assert {e.series_uid for e in entries} == set(reference)
    for e in entries:
        ref = reference[e.series_uid]
        assert (e.verdict, e.reason) == (ref.verdict, ref.reason)
        for name in ("pe_score", "patient_probability", "disease_score"):
            got, want = getattr(e, name), getattr(ref, name)
            assert (got is None) == (want is None) and (got is None or abs(got - want) <= 1e-5), (name, e, ref)
    scored = [e.series_uid for e in sorted(entries, key=lambda e: e.rank) if e.pe_score is not None]
    assert scored == [e.series_uid for e in sorted(reference.values(), key=lambda e: e.rank)
                      if e.pe_score is not None]
