"""File and folder names made from DICOM text (series descriptions, branch names)."""
from __future__ import annotations

import re


def safe_name(text: str, max_len: int = 60) -> str:
    """A file-name-safe version of ``text`` (letters, digits, - and _)."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_")
    return s[:max_len] or "unnamed"


def csv_value(x: object) -> object:
    """A cell of the CSV files: empty for None, six decimals for floats."""
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.6f}"
    return x
