"""Strict JSON for every file and every ``--json`` output: NaN and infinities, which the JSON
standard does not allow and many readers refuse, are written as null."""
from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth of dicts, lists and tuples) set to None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = 1) -> str:
    """JSON text that any strict reader accepts (objects json cannot encode become their str())."""
    return json.dumps(finite(value), indent=indent, default=str, allow_nan=False)
