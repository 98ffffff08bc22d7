"""Result and worklist tables as the panel shows them, and which table row a view row is.

Slicer's table view (qMRMLTableView) shows a vtkMRMLTableNode through a qMRMLTableModel behind a
QSortFilterProxyModel (qMRMLTableView::sortFilterProxyModel). By default the node puts the column
names into model row 0, so model row r is table row r - 1; with UseColumnTitleAsColumnHeader the
names go into the header and model row r is table row r. qMRMLTableModel::mrmlTableRowIndex does that
mapping (Libs/MRML/Widgets/qMRMLTableModel.cxx); ``table_row`` is the same rule for the scene logic.
Tables are locked (vtkMRMLTableNode::SetLocked) so that the user cannot rename ``p_pe`` or edit
the numbers the slice jumps and the worklist rows are read from.
"""
from __future__ import annotations

from typing import Any


def show_as_panel_table(node: Any) -> Any:
    """Column names as the header row, and read-only in every table view."""
    node.SetUseColumnTitleAsColumnHeader(True)
    node.SetLocked(True)
    return node


def table_row(node: Any, model_row: int) -> int:
    """The table row shown in (source, not sorted) model row ``model_row``; IndexError when it is none."""
    row = model_row if node.GetUseColumnTitleAsColumnHeader() else model_row - 1
    if not 0 <= row < node.GetNumberOfRows():
        raise IndexError(f"{node.GetName()}: view row {model_row} is not a table row "
                         f"(the table has {node.GetNumberOfRows()} rows)")
    return row
