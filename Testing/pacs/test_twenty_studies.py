"""Load: 20 studies sent by a real Orthanc over 4 concurrent associations (the fixture's Orthanc runs
four store jobs at once): all 20 triaged, none lost, none duplicated, each one's SR back in its own
study. The code is the load benchmark's (support/pacs_load.py); small studies, no Grad-CAM, so that
it stays within a few minutes on a shared 2-core machine."""
from __future__ import annotations

import pytest

from support.pacs_load import send_and_wait, upload_phantom_studies

STUDIES, SLICES, MATRIX = 20, 12, 96


@pytest.mark.slow
def test_twenty_studies_over_four_associations_are_all_triaged_once(orthanc, start_listener, tmp_path):
    study_ids = upload_phantom_studies(orthanc, tmp_path, STUDIES, MATRIX, SLICES, seed0=200)
    assert len(set(study_ids)) == STUDIES
    listener = start_listener(tmp_path / "spool", settle_s=1.0, options=["--cam", "none"])
    result = send_and_wait(orthanc, listener, study_ids, SLICES, timeout_s=300)
    assert (result.lost, result.triaged_twice, result.incomplete, result.jobs_failed) == (0, 0, 0, 0), result
    assert result.srs_in_orthanc == STUDIES and result.ok
    assert listener.query("SELECT COUNT(*), COUNT(DISTINCT study_uid) FROM series WHERE state='done' "
                          "AND send_state='sent'") == [(STUDIES, STUDIES)]
    assert result.max_associations >= 3, result  # the four jobs overlap (4 when they start together)
