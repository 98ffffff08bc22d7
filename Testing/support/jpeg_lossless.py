"""JPEG Lossless test files, made by DCMTK's dcmcjpeg (pydicom has no JPEG Lossless encoder):
process 14 selection value 1 (1.2.840.10008.1.2.4.70) or process 14 (1.2.840.10008.1.2.4.57)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pydicom.uid import JPEGLossless, JPEGLosslessSV1

DCMCJPEG = shutil.which("dcmcjpeg")  # Debian's dcmtk; scripts/setup.sh installs it
OPTIONS = {str(JPEGLosslessSV1): ["+e1"], str(JPEGLossless): ["+el", "+sv", "1"]}
MISSING = "dcmcjpeg (Debian package dcmtk) is not installed: scripts/setup.sh installs it"


def encode_jpeg_lossless(src: Path, dst: Path, syntax: str) -> Path:
    """``src`` re-encoded as JPEG Lossless ``syntax`` into ``dst``, keeping its SOPInstanceUID."""
    if DCMCJPEG is None:
        raise RuntimeError(MISSING)
    subprocess.run([DCMCJPEG, "-q", *OPTIONS[str(syntax)], "+un", str(src), str(dst)], check=True,
                   capture_output=True, timeout=60)
    return dst
