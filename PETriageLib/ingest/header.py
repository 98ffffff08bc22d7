"""The one reader of the DICOM header values PETriage uses: type, value multiplicity, range and
finiteness checked, each failure a ``SeriesError`` naming the file, the tag and the value.

Call inside ``scan.quiet_dicom()``: pydicom converts values lazily and warns on invalid ones.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pydicom

from PETriageLib.errors import SeriesError
from PETriageLib.ingest.limits import ORIENTATION_TOLERANCE


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(path: str, keyword: str, value: Any, why: str) -> SeriesError:
    return SeriesError(f"{path}: {keyword} {_show(value)} {why}")


def _raw(ds: pydicom.Dataset, keyword: str, path: str) -> Any:
    """The element's value, or None when absent or empty; conversion failures are errors."""
    if keyword not in ds:
        return None
    try:
        value = ds[keyword].value
    except Exception as exc:  # pydicom converts on access: a DS 'abc' fails here
        raise SeriesError(f"{path}: {keyword} cannot be read ({type(exc).__name__}: {exc})") from None
    if value is None or value == "" or (isinstance(value, (list, tuple, pydicom.multival.MultiValue)) and not len(value)):
        return None
    return value


def _as_float(path: str, keyword: str, item: Any, whole: Any) -> float:
    if isinstance(item, (bytes, bytearray, str)) and not isinstance(item, pydicom.valuerep.DSfloat):
        try:
            item = float(item.decode("ascii") if isinstance(item, (bytes, bytearray)) else item)
        except (ValueError, UnicodeDecodeError):
            raise _fail(path, keyword, whole, "is not a number") from None
    try:
        out = float(item)
    except (TypeError, ValueError, OverflowError):
        raise _fail(path, keyword, whole, "is not a number") from None
    if not math.isfinite(out):
        raise _fail(path, keyword, whole, "is not finite")
    return out


def numbers(ds: pydicom.Dataset, keyword: str, path: str, count: int, required: bool = False) -> tuple[float, ...] | None:
    """Exactly ``count`` finite numbers, or None when the element is absent (an error if required)."""
    value = _raw(ds, keyword, path)
    if value is None:
        if required:
            raise SeriesError(f"{path}: {keyword} missing")
        return None
    items = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    if len(items) != count:
        raise _fail(path, keyword, value, f"has {len(items)} value(s), {count} expected")
    return tuple(_as_float(path, keyword, item, value) for item in items)


def number(ds: pydicom.Dataset, keyword: str, path: str, required: bool = False,
           low: float | None = None, high: float | None = None, low_open: bool = False) -> float | None:
    """One finite number in [low, high] (``low_open``: (low, high]), or None when absent."""
    got = numbers(ds, keyword, path, 1, required)
    if got is None:
        return None
    x = got[0]
    below = low is not None and (x <= low if low_open else x < low)
    if below or (high is not None and x > high):
        bracket = "(" if low_open else "["
        raise _fail(path, keyword, ds[keyword].value, f"is outside {bracket}{low}, {high}]")
    return x


def integer(ds: pydicom.Dataset, keyword: str, path: str, required: bool = False,
            low: int | None = None, high: int | None = None) -> int | None:
    """One whole number in [low, high], or None when absent."""
    x = number(ds, keyword, path, required, low, high)
    if x is None:
        return None
    if x != int(x):
        raise _fail(path, keyword, ds[keyword].value, "is not a whole number")
    return int(x)


def text(ds: pydicom.Dataset, keyword: str) -> str:
    """Any element as stripped text ('' when absent or unreadable); multiple values joined by '\\'."""
    try:
        value = ds.get(keyword, "")
    except Exception:  # an unreadable free-text element is not worth refusing a series for
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("ascii", "replace").strip()
    return str(value if value is not None else "").strip()


def orientation(ds: pydicom.Dataset, path: str) -> tuple[float, ...] | None:
    """ImageOrientationPatient: two unit, orthogonal direction cosines, or None when absent."""
    iop = numbers(ds, "ImageOrientationPatient", path, 6)
    if iop is None:
        return None
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    tol = ORIENTATION_TOLERANCE
    if abs(np.linalg.norm(row) - 1) > tol or abs(np.linalg.norm(col) - 1) > tol:
        raise _fail(path, "ImageOrientationPatient", list(iop), "is not made of two unit vectors "
                    f"(lengths {np.linalg.norm(row):.3f}, {np.linalg.norm(col):.3f})")
    if abs(float(np.dot(row, col))) > tol:
        raise _fail(path, "ImageOrientationPatient", list(iop), f"has axes that are not orthogonal (dot product {np.dot(row, col):.3f})")
    return iop
