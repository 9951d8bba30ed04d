"""``labkit release``: turn the instructor's source notebook into the student version.

Solutions are replaced by prompts, hidden tests are removed entirely, outputs are cleared, and
every protected cell carries a fingerprint (``metadata.labkit``). The grader never trusts that
metadata: it rebuilds the student version from the source at grade time and compares.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import nbformat

from labkit.grading import authoring as au

DEFAULT_PROMPT = 'raise NotImplementedError("replace this line with your solution")'


def strip_solution(source: str) -> str:
    """Replace each solution region by its prompt (uncommented) or by a NotImplementedError line."""
    out, mode, indent, prompt = [], None, "", []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line, s = lines[i], lines[i].strip()
        if s == au.BEGIN_SOLUTION:
            indent = line[: len(line) - len(line.lstrip())]
            mode = "solution"
        elif s == au.END_SOLUTION:
            mode = None
            # a prompt region right after the solution replaces it; otherwise the default prompt
            j = i + 1
            if j < len(lines) and lines[j].strip() == au.BEGIN_PROMPT:
                prompt, j = [], j + 1
                while j < len(lines) and lines[j].strip() != au.END_PROMPT:
                    prompt.append(re.sub(r"^(\s*)# ?", r"\1", lines[j], count=1))
                    j += 1
                out.extend(prompt)
                i = j  # skip END PROMPT
            else:
                out.append(indent + DEFAULT_PROMPT)
        elif mode != "solution":
            out.append(line)
        i += 1
    return "\n".join(out)


def student_cells(assignment: au.Assignment) -> list[nbformat.NotebookNode]:
    """The student version's cells, each with ``metadata.labkit = {key, kind[, fingerprint]}``."""
    cells = []
    for i, cell in enumerate(assignment.source.cells):
        cell = copy.deepcopy(cell)
        key = au.cell_key(cell, i)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if au.is_test_cell(cell):
                m = au.TEST_RE.match(au.first_line(cell))
                if m.group(1):  # hidden: removed entirely
                    continue
                kind = "test"
            elif au.is_answer_cell(cell):
                cell.source = strip_solution(cell.source)
                kind = "answer"
            else:
                kind = "protected"
        else:
            kind = "free"
            cell.pop("attachments", None) if cell.cell_type == "raw" else None
        meta = {"key": key, "kind": kind}
        if kind in ("protected", "test"):
            meta["fingerprint"] = au.fingerprint(cell.source)
        cell.metadata["labkit"] = meta
        cell["id"] = re.sub(r"[^A-Za-z0-9_-]", "-", key)[:64]
        cells.append(cell)
    return cells


def student_notebook(assignment: au.Assignment) -> nbformat.NotebookNode:
    """The whole student notebook (outputs cleared, kernelspec python3)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = copy.deepcopy(assignment.source.metadata)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["labkit"] = {"assignment": assignment.name, "notebook": assignment.notebook,
                             "questions": {q: sum(t.points for t in assignment.tests if t.question == q)
                                           for q in assignment.questions}}
    nb.cells = student_cells(assignment)
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def release(assignment_dir: str | Path, out: str | Path = "build/release") -> dict:
    """Write ``out/<name>/<notebook>.ipynb`` (+ the data files it may read); return a manifest."""
    assignment = au.load_assignment(assignment_dir)
    nb = student_notebook(assignment)
    nbformat.validate(nb)
    dest = Path(out) / assignment.name
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / assignment.notebook
    nbformat.write(nb, path)
    for item in assignment.settings.get("data", []):
        src = assignment.folder / item
        if src.is_dir():
            shutil.copytree(src, dest / item, dirs_exist_ok=True)
        elif src.exists():
            (dest / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / item)
    manifest = {
        "assignment": assignment.name, "notebook": str(path),
        "questions": nb.metadata["labkit"]["questions"], "max_score": assignment.max_score,
        "visible_tests": [t.id for t in assignment.tests if not t.hidden],
        "hidden_tests": sum(t.hidden for t in assignment.tests),
        "protected_cells": [c.metadata["labkit"]["key"] for c in nb.cells
                            if c.metadata["labkit"]["kind"] in ("protected", "test")],
    }
    (dest / "release.json").write_text(json.dumps(manifest, indent=2))
    return manifest
