"""`petriage info`: series listing as JSON and text."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.dicom_factory import chest_hu, oblique_orientation, write_series

from PETriageLib.cli import main


def info_json(capsys, *args: str) -> dict:
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_real_series_json(capsys, real_series_dir):
    out = info_json(capsys, str(real_series_dir))
    assert len(out["series"]) == 1
    s = out["series"][0]
    assert (s["num_slices"], s["rows"], s["cols"], s["size"], s["modality"]) == (131, 512, 512, "512x512", "CT")
    assert s["spacing"] == pytest.approx([0.63, 0.63, 2.0], abs=0.01)
    assert s["orientation"] == "axial" and s["loaded"] and s["errors"] == []
    assert s["lung_slices"][0] <= 5 and s["lung_slices"][1] >= 115 and s["not_chest_reason"] is None
    assert any("SOPInstanceUID" in w for w in s["warnings"])
    assert s["gate_checked"] and s["not_analysable_reason"] is None  # triage would accept it
    phase = s["contrast_phase"]  # a non-contrast scan: unenhanced blood between the lungs
    assert phase["phase"] == "non_contrast" and 30 < phase["blood_hu"] < 90 and "no contrast" in phase["reason"]


def test_info_reports_the_gate_and_says_when_it_did_not_check(tmp_path, capsys):
    n = 12
    write_series(tmp_path, chest_hu(n, 96, 96, lung_slices=range(n)), orientation=oblique_orientation(15))
    s = info_json(capsys, str(tmp_path))["series"][0]
    assert s["gate_checked"] and "not an axial series" in s["not_analysable_reason"]
    headers_only = info_json(capsys, str(tmp_path), "--no-lungs")["series"][0]
    assert not headers_only["gate_checked"] and headers_only["not_analysable_reason"] is None
    assert main(["info", str(tmp_path)]) == 0
    assert "triage: refused, not an axial series" in capsys.readouterr().out


def test_folder_with_several_series_and_problems(tmp_path, capsys):
    write_series(tmp_path / "chest", chest_hu(6, 64, 64), spacing=(4.0, 4.0, 5.0), series_uid="1.2.3.1")
    write_series(tmp_path / "tilt", chest_hu(3, 48, 48), orientation=oblique_orientation(30), series_uid="1.2.3.2")
    write_series(tmp_path / "mr", chest_hu(2, 32, 32), modality="MR", series_uid="1.2.3.3")
    (tmp_path / "notes.txt").write_text("x")
    out = info_json(capsys, str(tmp_path))
    by_uid = {s["uid"]: s for s in out["series"]}
    assert [s["uid"] for s in out["series"]] == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]  # largest first
    chest, tilt, mr = by_uid["1.2.3.1"], by_uid["1.2.3.2"], by_uid["1.2.3.3"]
    assert chest["spacing"] == [4.0, 4.0, 5.0] and chest["lung_slices"] == [0, 5] and chest["lung_slice_count"] == 6
    assert tilt["orientation"] == "oblique" and any("triage needs axial" in w for w in tilt["warnings"])
    assert not mr["loaded"] and any("modality MR, not CT" in e for e in mr["errors"])
    assert all(any("skipped 1 non-DICOM" in w for w in s["warnings"]) for s in out["series"])


def test_text_output_and_headers_only(tmp_path, capsys):
    write_series(tmp_path, chest_hu(3, 64, 64), spacing=(4.0, 4.0, 5.0), series_uid="1.2.3.9")
    assert main(["info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "1 series in" in text and "[1] 1.2.3.9  CT" in text
    assert "3 slices, 64x64 px, spacing 4.000 x 4.000 x 5.000 mm, axial" in text and "lungs: slices 0-2" in text
    fast = info_json(capsys, str(tmp_path), "--no-lungs")["series"][0]
    assert not fast["loaded"] and fast["lung_slices"] is None and fast["spacing"] == [4.0, 4.0, 5.0]


def test_console_script_runs(tmp_path):
    write_series(tmp_path, chest_hu(2, 32, 32))
    entry = "import sys; from PETriageLib.cli import main; sys.exit(main())"  # what the `petriage` script runs
    done = subprocess.run([sys.executable, "-c", entry, "-q", "info", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["series"][0]["num_slices"] == 2


def test_no_dicom_at_all_exits_2(tmp_path, capsys, caplog):
    """As documented: 2 when the path holds no DICOM series (empty, or only other files)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not DICOM")
    for folder in ("empty", "text"):
        assert main(["info", str(tmp_path / folder), "--json"]) == 2
        assert main(["triage", str(tmp_path / folder), "--out", str(tmp_path / "out")]) == 2
    assert "no readable DICOM image files" in caplog.text and "empty, no files found" in caplog.text
    # a path that does not exist is a usage error too, in `triage` as in `screen`
    assert main(["triage", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "nowhere: no such file or folder" in caplog.text


def test_json_output_is_strict(tmp_path):
    """NaN and infinities are not JSON: every report and --json output writes them as null."""
    from PETriageLib.reporting.json_text import to_json

    text = to_json({"a": float("nan"), "b": [1.0, float("inf")], "c": (float("-inf"), "x")})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": [None, "x"]}
