"""A small, TensorFlow-free assignment and helpers to submit notebooks to it (the grading tests share them)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.grading import authoring as au
from labkit.grading import release as rel

ROOT = Path(__file__).resolve().parent.parent
SECRET = "labkit-hidden-7f3a"  # appears only in a hidden test of the fixture assignment
HIDDEN_INPUT = "total(np.ones(5))"  # a hidden test's `# uses:` expression
SOLUTIONS = {"answer-3": "def total(x):\n    return float(np.sum(x))", "answer-6": "squares = data ** 2",
             "answer-9": "answer = 42"}


def _params(src):
    cell = new_code_cell(src)
    cell.metadata["tags"] = ["parameters"]
    return cell


def make_assignment(folder: Path, **settings) -> Path:
    """Three questions: q1 a function (probed), q2 an array, q3 hidden-only. 7 points."""
    cells = [
        new_markdown_cell("# Fixture assignment"),
        _params("N = 4"),
        new_code_cell("import numpy as np\ndata = np.arange(N, dtype=float)"),
        new_code_cell("def total(x):\n    ### BEGIN SOLUTION\n    return float(np.sum(x))\n    ### END SOLUTION"),
        new_code_cell("# TEST q1 (1 point): total(data) should be 6\n# uses: t = total(data)\nassert t == 6.0"),
        new_code_cell(f"# HIDDEN TEST q1 (2 points): total should add any array\n# {SECRET}\n"
                      f"# uses: t2 = {HIDDEN_INPUT}\nassert t2 == 5.0"),
        new_code_cell("### BEGIN SOLUTION\nsquares = data ** 2\n### END SOLUTION\n"
                      "### BEGIN PROMPT\n# squares = ...\n### END PROMPT"),
        new_code_cell("# TEST q2 (1 point): squares should have 4 entries\nassert len(squares) == 4"),
        new_code_cell("# HIDDEN TEST q2 (2 points): squares should be data squared\n"
                      "assert np.allclose(squares, [0, 1, 4, 9])"),
        new_code_cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"),
        new_code_cell("# HIDDEN TEST q3 (1 point): the answer\nassert answer == 42"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "hw.ipynb")
    conf = {"cell_timeout": 10, "timeout": 90, "memory_mb": 3072, "max_output_mb": 1, "max_processes": 128,
            "max_disk_mb": 100, "max_files": 500}
    (folder / "assignment.json").write_text(json.dumps({**conf, **settings}))
    return folder


def student_nb(assignment_dir: Path, answers: dict[str, str] | None = None, solved: bool = True):
    """The released notebook with answer cells filled (by key), solved with the solution by default."""
    a = au.load_assignment(assignment_dir)
    nb = rel.student_notebook(a)
    solutions = dict(SOLUTIONS) if solved else {}
    solutions.update(answers or {})
    for cell in nb.cells:
        key = cell.metadata["labkit"]["key"]
        if key in solutions:
            cell.source = solutions[key]
    return nb


def submit(subs: Path, student: str, nb, name: str = "hw.ipynb") -> Path:
    (subs / student).mkdir(parents=True, exist_ok=True)
    path = subs / student / name
    if isinstance(nb, (str, bytes)):
        path.write_text(nb) if isinstance(nb, str) else path.write_bytes(nb)
    else:
        nbformat.write(nb, path)
    return path


def insert_after(nb, key: str, source: str):
    idx = next(i for i, c in enumerate(nb.cells) if c.metadata["labkit"]["key"] == key)
    nb.cells.insert(idx + 1, new_code_cell(source))
    return nb


def read_grades(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", encoding="utf-8") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh)}
