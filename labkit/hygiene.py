"""Notebook hygiene: what every committed notebook must satisfy (DESIGN.md §2).

- no outputs and no execution counts (notebooks are code: outputs belong in build/);
- a code cell tagged ``parameters`` is the first code cell, after the title, so that papermill
  can scale the run and the defaults give the fast run.
"""
from __future__ import annotations

from pathlib import Path

import nbformat


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """Everything wrong with ``nb``, in words; an empty list means it is clean."""
    found = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    if dirty:
        found.append(f"has outputs or execution counts in cells {dirty} (clear them before committing)")
    if not code_cells:
        found.append("has no code cells")
    elif "parameters" not in code_cells[0].get("metadata", {}).get("tags", []):
        found.append("its first code cell is not tagged 'parameters'")
    if not nb.cells or nb.cells[0].cell_type != "markdown" or not nb.cells[0].source.lstrip().startswith("#"):
        found.append("does not start with a markdown title ('# ...')")
    return found


def check_file(path: str | Path) -> list[str]:
    """:func:`problems` for a notebook file; an unreadable file is a problem too."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # invalid JSON, unknown nbformat
        return [f"cannot be read as a notebook: {exc}"]
    return problems(nb)


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Clear outputs and execution counts in place (what to do before committing); returns ``nb``."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb
