"""`dciodvfy` (Debian dicom3tools) on a file: its errors and warnings (the tests require no errors)."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Verdict:
    errors: list[str]
    warnings: list[str]
    output: str


def dciodvfy(path: Path) -> Verdict:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy not installed: scripts/setup.sh installs Debian's dicom3tools")
    proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    return Verdict([line for line in lines if line.startswith("Error")],
                   [line for line in lines if line.startswith("Warning")], proc.stdout + proc.stderr)
