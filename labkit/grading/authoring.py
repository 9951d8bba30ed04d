"""Read an instructor's source notebook: which cells are answers, tests, prompts and setup.

The marking syntax (documented with an example in the README, section "Assignments and grading"):

- a **solution region** inside a code cell::

      ### BEGIN SOLUTION
      z = (x - x.mean()) / x.std()
      ### END SOLUTION

  optionally followed by a **prompt region**, written as comments, that the student sees instead::

      ### BEGIN PROMPT
      # z = ...   # scale x to mean 0 and standard deviation 1
      ### END PROMPT

  Without a prompt, the student sees ``raise NotImplementedError("...")``.
  A cell holding a solution region is an *answer cell*: the student edits it.
- a **test cell** starts with one of::

      # TEST q1 (1 point): z should have mean 0
      # HIDDEN TEST q1 (2 points): z should have standard deviation 1

  Its body is plain ``assert`` statements over the student's variables. Lines of the form
  ``# uses: name = expression`` compute values from the student's code first (for example, call
  their function on an input), so that the test itself only needs plain values. A question's
  points are the sum of its tests' points.
- the cell tagged ``parameters`` is papermill's, as in every lab notebook.

Every other code cell is *protected*: the student may not change it (the grader restores and
flags altered ones). Markdown cells are free.
"""
from __future__ import annotations

import ast
import builtins
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

TEST_RE = re.compile(r"^#\s*(HIDDEN\s+)?TEST\s+([A-Za-z_][\w.-]*)\s*(?:\(\s*([\d.]+)\s*points?\s*\))?\s*:?\s*(.*)$",
                     re.IGNORECASE)
USES_RE = re.compile(r"^#\s*uses:\s*([A-Za-z_]\w*)\s*=\s*(.+)$")
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_PROMPT, END_PROMPT = "### BEGIN PROMPT", "### END PROMPT"
# Names a test body may use without the student exporting them: the test environment's helpers.
TEST_ENV_NAMES = {"np", "numpy", "math"}


class AuthoringError(ValueError):
    """The instructor's notebook has a marking mistake (said in plain words)."""


@dataclass
class Test:
    """One test: visible (students may run it) or hidden (only the grader runs it)."""

    id: str                 # "q1.1", "q1.2", ... numbered per question in notebook order
    question: str
    points: float
    message: str            # shown to the student when the test fails
    hidden: bool
    uses: dict[str, str]    # name -> expression evaluated in the student's namespace
    body: str               # the assertions, run on plain values
    needs: list[str] = field(default_factory=list)  # student variables the body reads

    def public(self) -> dict:
        """What a student may see about this test (never a hidden test's code)."""
        return {"id": self.id, "question": self.question, "points": self.points,
                "message": self.message, "hidden": self.hidden}


@dataclass
class Assignment:
    """An assignment folder: its source notebook, tests, and grading settings."""

    name: str
    folder: Path
    notebook: str           # file name of the source (and student) notebook
    source: nbformat.NotebookNode
    tests: list[Test]
    settings: dict

    @property
    def questions(self) -> list[str]:
        return list(dict.fromkeys(t.question for t in self.tests))

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)

    def exports(self) -> dict[str, dict[str, str]]:
        """Per question, the values the student notebook must export: name -> expression."""
        out: dict[str, dict[str, str]] = {}
        for t in self.tests:
            q = out.setdefault(t.question, {})
            for name in t.needs:
                q.setdefault(name, name)
            q.update(t.uses)
        return out

    def tests_digest(self) -> str:
        """Fingerprint of everything that decides a grade: tests, points, exports, settings."""
        blob = json.dumps([[t.id, t.points, t.message, t.hidden, t.uses, t.body] for t in self.tests]
                          + [self.settings], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


DEFAULT_SETTINGS = {
    "cell_timeout": 60,      # seconds per cell, then the cell is interrupted
    "timeout": 300,          # seconds of wall time for the whole notebook
    "cpu_seconds": 600,      # CPU time per process
    "memory_mb": 4096,       # address space per process (TensorFlow needs ~2 GB)
    "max_processes": 256,    # processes + threads of the sandbox user
    "max_output_mb": 2,      # notebook output kept per submission; the rest is dropped
    "max_file_mb": 64,       # largest file the student code may write
    "max_disk_mb": 512,      # all it writes (working folder, and its private /tmp)
    "max_files": 10_000,     # files it may create in its working folder
    "data": [],              # files or folders (relative to the assignment) the notebook may read
}


def source_lines(cell) -> list[str]:
    return cell.source.splitlines()


def first_line(cell) -> str:
    lines = source_lines(cell)
    return lines[0].strip() if lines else ""


def is_answer_cell(cell) -> bool:
    return cell.cell_type == "code" and any(line.strip() == BEGIN_SOLUTION for line in source_lines(cell))


def is_test_cell(cell) -> bool:
    return cell.cell_type == "code" and bool(TEST_RE.match(first_line(cell)))


def is_parameters_cell(cell) -> bool:
    return "parameters" in cell.get("metadata", {}).get("tags", [])


def _free_names(body: str, where: str) -> list[str]:
    """Names a test body reads but never binds: the student values it needs."""
    try:
        tree = ast.parse(body)
    except SyntaxError as exc:
        raise AuthoringError(f"{where}: the test has a syntax error: {exc}") from exc
    loaded, bound = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded.append(node.id) if isinstance(node.ctx, ast.Load) else bound.add(node.id))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda, ast.comprehension, ast.arg)):
            if isinstance(node, ast.FunctionDef):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
    skip = bound | TEST_ENV_NAMES | set(dir(builtins))
    return list(dict.fromkeys(n for n in loaded if n not in skip))


def parse_test(cell, index: int, counters: dict[str, int]) -> Test:
    """A test cell -> Test. ``counters`` numbers tests per question."""
    lines = source_lines(cell)
    m = TEST_RE.match(lines[0].strip())
    hidden, question, points, message = bool(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
    where = f"cell {index + 1} ({lines[0].strip()!r})"
    uses, body = {}, []
    for line in lines[1:]:
        u = USES_RE.match(line.strip())
        if u:
            try:
                ast.parse(u.group(2), mode="eval")
            except SyntaxError as exc:
                raise AuthoringError(f"{where}: '# uses:' needs 'name = expression': {exc}") from exc
            uses[u.group(1)] = u.group(2).strip()
        else:
            body.append(line)
    counters[question] = counters.get(question, 0) + 1
    body_text = "\n".join(body).strip() + "\n"
    needs = [n for n in _free_names(body_text, where) if n not in uses]
    return Test(id=f"{question}.{counters[question]}", question=question,
                points=float(points) if points else 1.0,
                message=message or f"test {counters[question]} of {question}", hidden=hidden,
                uses=uses, body=body_text, needs=needs)


def cell_key(cell, index: int) -> str:
    """The stable name labkit gives a cell of the source notebook (kept in the student version)."""
    if is_test_cell(cell):
        m = TEST_RE.match(first_line(cell))
        return f"test-{m.group(2)}-{index}"
    if is_parameters_cell(cell):
        return "parameters"
    return f"{'answer' if is_answer_cell(cell) else cell.cell_type}-{index}"


def fingerprint(text: str) -> str:
    """The fingerprint of a protected cell's source (whitespace at the ends ignored)."""
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def check_solution_markers(cell, index: int) -> None:
    depth = {BEGIN_SOLUTION: 0, BEGIN_PROMPT: 0}
    for line in source_lines(cell):
        s = line.strip()
        if s in (BEGIN_SOLUTION, BEGIN_PROMPT):
            if any(depth.values()):
                raise AuthoringError(f"cell {index + 1}: '{s}' inside another region")
            depth[s] = 1
        elif s in (END_SOLUTION, END_PROMPT):
            begin = BEGIN_SOLUTION if s == END_SOLUTION else BEGIN_PROMPT
            if not depth[begin]:
                raise AuthoringError(f"cell {index + 1}: '{s}' without '{begin}'")
            depth[begin] = 0
    if any(depth.values()):
        raise AuthoringError(f"cell {index + 1}: a region is not closed (missing '### END ...')")


def find_source_notebook(folder: Path) -> Path:
    settings = load_settings(folder)
    if settings.get("notebook"):
        return folder / settings["notebook"]
    found = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if len(found) != 1:
        raise AuthoringError(f"{folder}: expected one source notebook (or 'notebook' in assignment.json), "
                             f"found {len(found)}")
    return found[0]


def load_settings(folder: Path) -> dict:
    path = folder / "assignment.json"
    user = json.loads(path.read_text()) if path.exists() else {}
    return {**DEFAULT_SETTINGS, **user}


def load_assignment(folder: str | Path) -> Assignment:
    """Parse ``assignments/<name>/``: its source notebook, tests and settings."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AuthoringError(f"no assignment folder at {folder}")
    nb_path = find_source_notebook(folder)
    nb = nbformat.read(nb_path, as_version=4)
    tests, counters = [], {}
    if not any(is_parameters_cell(c) for c in nb.cells):
        raise AuthoringError(f"{nb_path}: no cell tagged 'parameters'")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        check_solution_markers(cell, i)
        if is_test_cell(cell):
            if is_answer_cell(cell):
                raise AuthoringError(f"cell {i + 1}: a test cell cannot hold a solution region")
            tests.append(parse_test(cell, i, counters))
    if not tests:
        raise AuthoringError(f"{nb_path}: no '# TEST' or '# HIDDEN TEST' cells")
    settings = load_settings(folder)
    settings.pop("notebook", None)
    return Assignment(name=folder.name, folder=folder, notebook=nb_path.name, source=nb, tests=tests,
                      settings=settings)
