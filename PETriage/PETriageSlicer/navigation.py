"""Move the slice views to the slices that matter: a table row, the max-p_pe slice, the next positive.

A jump moves each view along its own normal to the centre of the target slice, so the axial
view shows slice k exactly and the other views keep their orientation.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import slicer

from PETriageSlicer.geometry import slice_center_ras
from PETriageSlicer.results import INPUT_ROLE
from PETriageSlicer.scene import nodes_by_class


def table_column(table: Any, name: str) -> list:
    """Values of one column of a results table (str, int or float)."""
    col = table.GetTable().GetColumnByName(name)
    if col is None:
        raise KeyError(f"table {table.GetName()} has no column {name!r}")
    return [col.GetValue(i) for i in range(col.GetNumberOfValues())]


def input_volume(table: Any) -> Any:
    ct = table.GetNodeReference(INPUT_ROLE)
    if ct is None:
        raise ValueError(f"table {table.GetName()} is not linked to a CT volume (no {INPUT_ROLE} reference)")
    return ct


def jump_to_slice(ct: Any, k: int, views: Sequence[str] | None = None) -> np.ndarray:
    """Put every slice view (or the named ones) through the centre of slice ``k``; return that RAS point."""
    dims = ct.GetImageData().GetDimensions()
    if not 0 <= k < dims[2]:
        raise IndexError(f"slice {k} is outside {ct.GetName()} (0..{dims[2] - 1})")
    point = slice_center_ras(ct, k)
    for node in nodes_by_class(ct.GetScene(), "vtkMRMLSliceNode"):
        if views is None or node.GetLayoutName() in views:
            node.JumpSliceByOffsetting(*point)
    return point


def jump_to_row(table: Any, row: int, views: Sequence[str] | None = None) -> int:
    """Jump to the slice of a table row; return its slice index."""
    k = int(table_column(table, "index")[row])
    jump_to_slice(input_volume(table), k, views)
    return k


def max_pe_slice(table: Any) -> int | None:
    """Index of the slice with the highest p_pe (None when stage 2 ran on no slice)."""
    p = np.array(table_column(table, "p_pe"), float)
    if np.all(np.isnan(p)):
        return None
    return int(table_column(table, "index")[int(np.nanargmax(p))])


def jump_to_max_pe(table: Any, views: Sequence[str] | None = None) -> int | None:
    k = max_pe_slice(table)
    if k is not None:
        jump_to_slice(input_volume(table), k, views)
    return k


def current_slice(ct: Any, view: str = "Red") -> int:
    """The slice index of ``ct`` nearest to where the view is now."""
    node = ct.GetScene().GetNodeByID(f"vtkMRMLSliceNode{view}")
    sliceToRAS = slicer.util.arrayFromVTKMatrix(node.GetSliceToRAS())
    center = np.append(sliceToRAS[:3, 3], 1.0)
    from PETriageSlicer.geometry import ijk_to_ras

    ijk = np.linalg.inv(ijk_to_ras(ct)) @ center
    return int(np.clip(round(ijk[2]), 0, ct.GetImageData().GetDimensions()[2] - 1))


def next_positive(table: Any, after: int, labels: Sequence[str] = ("pe",), step: int = 1) -> int | None:
    """The next slice index beyond ``after`` (in direction ``step``) labelled one of ``labels``, wrapping."""
    idx = [int(i) for i in table_column(table, "index")]
    lab = table_column(table, "label")
    hits = [k for k, name in zip(idx, lab) if name in labels]
    if not hits:
        return None
    ahead = [k for k in hits if (k - after) * step > 0]
    if ahead:
        return min(ahead, key=lambda k: abs(k - after))
    return min(hits) if step > 0 else max(hits)  # wrap around


def jump_to_next_positive(table: Any, labels: Sequence[str] = ("pe",), step: int = 1,
                          view: str = "Red") -> int | None:
    """From where the view is now, jump to the next positive slice; return it (None if there is none)."""
    ct = input_volume(table)
    k = next_positive(table, current_slice(ct, view), labels, step)
    if k is not None:
        jump_to_slice(ct, k)
    return k
