"""Markdown tables in the paper's layout: each cell "96.1% (521/542)".

Slice-level (paper Tables 2, 3 and 5): one row per model, columns accuracy, then the
sensitivity of each class, then AUROC with its 95% CI. Patient-level (Tables 4 and 6): one
row per true patient class with the share of those patients classified correctly.
"""
from __future__ import annotations

from typing import Sequence


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; cells are written with str()."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def auroc_text(auroc: dict) -> str:
    """AUROC and CI of ``metrics.auroc_ci`` as "0.907 (0.887-0.928)"; "n/a" when one class was absent."""
    if auroc.get("auroc") is None:
        return "n/a"
    return f"{auroc['auroc']:.3f} ({auroc['ci_low']:.3f}-{auroc['ci_high']:.3f})"


def slice_table(rows: Sequence["tuple[str, dict]"], class_names: Sequence[str]) -> str:
    """rows: (model label, metrics.binary_report(...)) pairs."""
    head = ["Model", "Accuracy"] + [f"{c.upper() if c in ('wnl', 'pe') else c.capitalize()} sensitivity"
                                    for c in class_names] + ["AUROC (95% CI)"]
    return markdown_table(head, [[label, rep["accuracy"]["text"]] + [rep["per_class"][c]["text"] for c in class_names]
                                 + [auroc_text(rep["auroc"])] for label, rep in rows])


def patient_table(rows: Sequence["tuple[str, str]"], first: str = "Patients",
                  second: str = "Correctly classified") -> str:
    """rows: (patient class, formatted count such as "100.0% (20/20)")."""
    return markdown_table((first, second), rows)


def confusion_table(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    return markdown_table(["True \\ Predicted"] + list(labels), [[labels[i]] + list(row) for i, row in enumerate(matrix)])


def operating_point_table(points: dict, class_names: "tuple[Sequence[str], Sequence[str]]") -> str:
    """Per stage, one row per threshold (``metrics.operating_point`` rows under "stage1"/"stage2")."""
    head = ("Stage", "Threshold", "Accuracy", "Sensitivity (negative class)", "Sensitivity (positive class)")
    rows = [(f"{stage[-1]} ({' vs '.join(names)})", f"{row['threshold']:.4f}", row["accuracy"],
             f"{names[0]}: {row[names[0]]}", f"{names[1]}: {row[names[1]]}")
            for stage, names in zip(("stage1", "stage2"), class_names) for row in points[stage]]
    return markdown_table(head, rows)
