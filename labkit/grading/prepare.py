"""Turn a student's submission into the steps the sandbox runs (grader side, no student code).

Steps, each a small function (nbgrader-preprocessor style):

1. :func:`read_submission` -- find the notebook without following links, read at most 20 MB, check
   it is JSON of nbformat 4 with well-formed cells (else ``invalid``); keep only what grading uses;
2. :func:`restore_protected` -- compare every protected cell with the grader's own student
   version (rebuilt from the source, never taken from the submission's metadata): altered ones
   are replaced by the released text, deleted ones re-inserted, and both flag the submission;
3. :func:`scan` -- look at the student's code for grader-tampering patterns (flags, never points;
   :mod:`labkit.grading.detect`);
4. :func:`plan_steps` -- drop the test cells, and list what the notebook client does: run each
   cell, and ask for each question's values right after the question's tests (then once more at
   the end). The export requests carry plans (:mod:`labkit.grading.plans`), never a test's text.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labkit.grading import authoring as au
from labkit.grading import detect
from labkit.grading import plans as pl
from labkit.grading import release as rel
from labkit.grading import untrusted

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
MAX_CELLS = 2000
MAX_NOTEBOOK_DEPTH = 100


@dataclass
class Prepared:
    """What the grader knows about a submission before running it."""

    student: str
    digest: str                                    # sha256 of the submitted bytes (or "missing")
    cells: list = field(default_factory=list)      # [(cell, template key or None)] in the student's order
    steps: list = field(default_factory=list)      # what the notebook client runs (see plan_steps)
    final: str = ""                                # the final export's plans (JSON)
    invalid: str | None = None                     # why it cannot be graded at all
    notes: list[str] = field(default_factory=list)  # plain facts for the reason column
    flags: list[str] = field(default_factory=list)  # reasons to flag it for review


def _open_folder(folder: Path) -> int:
    """The submission folder, opened without following a link (a link is refused, at any level)."""
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (40, 20):  # ELOOP: a link; ENOTDIR: not a folder
            raise untrusted.Untrusted("the submission folder is a link or not a folder "
                                      "(links are never followed)") from None
        raise untrusted.Untrusted(f"the submission folder cannot be opened ({exc.strerror})") from None


def _find_notebook(fd: int, wanted: str) -> tuple[str, list[str]]:
    """The notebook's file name inside the folder, and notes; raises Untrusted when there is none."""
    with os.scandir(fd) as it:
        entries = {e.name: e for e in it}
    entry = entries.get(wanted)
    if entry is not None:
        if entry.is_symlink():
            raise untrusted.Untrusted("the notebook is a link (links are never followed)")
        if not entry.is_file(follow_symlinks=False):
            raise untrusted.Untrusted(f"{wanted!r} is not a regular file")
        return wanted, []
    found = sorted(n for n, e in entries.items() if n.endswith(".ipynb") and not n.startswith(".")
                   and e.is_file(follow_symlinks=False) and not e.is_symlink())
    if len(found) == 1:
        shown = untrusted.student_id(found[0])[0]
        return found[0], [f"the notebook was named {shown!r}, not {wanted!r}; graded it anyway"]
    raise untrusted.Untrusted(f"no notebook named {wanted!r}" if not found else
                              f"no notebook named {wanted!r}, and {len(found)} others: cannot tell which to grade")


def _cells(doc) -> list[nbformat.NotebookNode]:
    """The notebook's cells as nbformat cells holding only what grading uses; raises Untrusted."""
    cells = doc.get("cells")
    if type(cells) is not list:
        raise untrusted.Untrusted("it has no list of cells")
    if len(cells) > MAX_CELLS:
        raise untrusted.Untrusted(f"it has more than {MAX_CELLS} cells")
    out = []
    for i, c in enumerate(cells, 1):
        if type(c) is not dict or c.get("cell_type") not in ("code", "markdown", "raw"):
            raise untrusted.Untrusted(f"cell {i} is not a code, markdown or raw cell")
        source = c.get("source", "")
        if type(source) is list and all(type(x) is str for x in source):
            source = "".join(source)
        if type(source) is not str:
            raise untrusted.Untrusted(f"cell {i}'s source is not text")
        meta = c.get("metadata") if type(c.get("metadata")) is dict else {}
        cell = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
                "raw": nbformat.v4.new_raw_cell}[c["cell_type"]](source)
        cell.pop("id", None)
        tags = meta.get("tags")
        if type(tags) is list and all(type(t) is str for t in tags):
            cell.metadata["tags"] = tags[:50]
        labkit_meta = meta.get("labkit")
        if type(labkit_meta) is dict and type(labkit_meta.get("key")) is str:
            cell.metadata["labkit"] = {"key": labkit_meta["key"][:200]}
        out.append(cell)
    return out


def read_submission(folder: Path, assignment: au.Assignment) -> tuple[Prepared, nbformat.NotebookNode | None]:
    """Read ``SUBMISSIONS/<student>/<notebook>`` as untrusted input: a Prepared, and the notebook or None."""
    student, bad_name = untrusted.student_id(folder.name)
    try:
        fd = _open_folder(folder)
    except untrusted.Untrusted as exc:
        return Prepared(student, "missing", invalid=str(exc)), None
    try:
        name, notes = _find_notebook(fd, assignment.notebook)
        raw = untrusted.read_file(name, MAX_NOTEBOOK_BYTES, dir_fd=fd)
    except untrusted.Untrusted as exc:
        missing = str(exc).startswith("no notebook")
        return Prepared(student, "missing", invalid=str(exc) if missing else f"the notebook cannot be read: {exc}"), None
    finally:
        os.close(fd)
    prep = Prepared(student, hashlib.sha256(raw).hexdigest()[:16], notes=notes)
    if bad_name:
        prep.flags.append(f"{bad_name}; graded as {student!r}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prep.invalid = f"the notebook is not valid JSON (it is not UTF-8 text: {exc.reason} at byte {exc.start})"
        return prep, None
    try:
        doc = untrusted.loads(text, MAX_NOTEBOOK_BYTES, MAX_NOTEBOOK_DEPTH, "the notebook")
    except untrusted.Untrusted as exc:
        prep.invalid = f"{exc}; is it valid JSON, saved completely?" if "not valid JSON" in str(exc) else str(exc)
        return prep, None
    if type(doc) is not dict or doc.get("nbformat") != 4:
        got = doc.get("nbformat") if type(doc) is dict else type(doc).__name__
        prep.invalid = f"the notebook has nbformat {repr(got)[:20]}; expected 4 (save it from JupyterLab)"
        return prep, None
    try:
        cells = _cells(doc)
    except untrusted.Untrusted as exc:
        prep.invalid = f"the notebook's structure is not valid nbformat 4: {exc}"
        return prep, None
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return prep, nb


def restore_protected(prep: Prepared, nb: nbformat.NotebookNode, assignment: au.Assignment) -> list:
    """Cells to run, in the student's order, with protected cells as released.

    Returns ``[(cell, template_key_or_None), ...]``; test cells keep their key (dropped later).
    """
    template = rel.student_cells(assignment)
    by_key = {c.metadata["labkit"]["key"]: c for c in template}
    protected = {k for k, c in by_key.items() if c.metadata["labkit"]["kind"] in ("protected", "test")}
    by_fp = {au.fingerprint(c.source): k for k, c in by_key.items() if k in protected}
    seen, cells = set(), []
    for cell in nb.cells:
        key = (cell.get("metadata", {}).get("labkit") or {}).get("key")
        if not isinstance(key, str) or key not in by_key or key in seen:
            key = None
            if cell.cell_type == "code":
                fp_key = by_fp.get(au.fingerprint(cell.source))
                if fp_key and fp_key not in seen:
                    key = fp_key  # lost its metadata (another editor), content intact
        if key in protected:
            if au.fingerprint(cell.source) != au.fingerprint(by_key[key].source) and \
                    by_key[key].metadata["labkit"]["kind"] == "protected":
                prep.flags.append(f"protected cell {len(cells) + 1} ({key}) was altered; the released version was run")
            cell = by_key[key]  # the released text, tags and metadata
        if key is not None:
            seen.add(key)
        cells.append((cell, key))
    # re-insert deleted protected cells after the cell that precedes them in the template
    order = [c.metadata["labkit"]["key"] for c in template]
    stripped = not any(isinstance(c.get("metadata", {}).get("labkit"), dict) for c in nb.cells)
    if stripped:
        prep.notes.append("the notebook lost its labkit cell metadata (edited outside JupyterLab?); "
                          "protected cells were matched by their content")
    for i, key in enumerate(order):
        if key in seen:
            continue
        kind = by_key[key].metadata["labkit"]["kind"]
        if kind == "answer":
            if not stripped:
                prep.notes.append(f"the answer cell {key} was deleted")
            continue
        if kind != "protected":
            continue
        prev = next((order[j] for j in range(i - 1, -1, -1) if order[j] in seen), None)
        pos = next((n + 1 for n, (_, k) in enumerate(cells) if k == prev), 0) if prev else 0
        cells.insert(pos, (by_key[key], key))
        seen.add(key)
        prep.flags.append(f"protected cell {key} was deleted; the released version was re-inserted")
    return cells


def scan(prep: Prepared, cells: list, assignment: au.Assignment) -> None:
    """Flag code that looks like an attempt on the grader (students' own cells only)."""
    kinds = {c.metadata["labkit"]["key"]: c.metadata["labkit"]["kind"] for c in rel.student_cells(assignment)}
    found = {}
    reader = detect.Submission()
    for n, (cell, key) in enumerate(cells, 1):
        if cell.cell_type != "code" or (key is not None and kinds.get(key) != "answer"):
            continue
        for what in reader.cell(cell.source):
            found.setdefault(what, n)
    for what, n in found.items():
        prep.flags.append(f"cell {n} {what}")


def plan_steps(cells: list, assignment: au.Assignment, plans: dict[str, dict]) -> tuple[list[dict], str]:
    """What the notebook client runs: ``[{"cell": n, "pos": i, "source": ...} | {"export": q, "plan": ...}]``
    (``n`` is the cell's number as the student sees it, ``pos`` its index in ``cells``), and the final
    export's plans. Test cells are left out: their checks run in the grader, on the exported values."""
    last_test = {}
    for t_cell_key in [c.metadata["labkit"]["key"] for c in rel.student_cells(assignment)
                       if c.metadata["labkit"]["kind"] == "test"]:
        last_test[t_cell_key[len("test-"):].rsplit("-", 1)[0]] = t_cell_key
    # a question is exported right after its last visible test; questions with hidden tests only are
    # exported after the cell that precedes their first hidden test
    hidden_only = {}
    for i, cell in enumerate(assignment.source.cells):
        m = au.TEST_RE.match(au.first_line(cell)) if cell.cell_type == "code" else None
        if m and m.group(2) not in last_test:
            prev = [au.cell_key(c, j) for j, c in enumerate(assignment.source.cells[:i])
                    if not (c.cell_type == "code" and au.is_test_cell(c))]
            hidden_only.setdefault(m.group(2), prev[-1] if prev else None)
    after = {}
    for q, key in last_test.items():
        after.setdefault(key, []).append(q)
    for q, key in hidden_only.items():
        after.setdefault(key, []).append(q)
    steps = []
    for n, (cell, key) in enumerate(cells, 1):
        kind = (cell.metadata.get("labkit") or {}).get("kind")
        is_test = (key and key.startswith("test-")) or kind == "test"
        if cell.cell_type == "code" and not is_test:
            steps.append({"cell": n, "pos": n - 1, "source": cell.source})
        for q in after.get(key, []) if key else []:
            steps.append({"export": q, "plan": pl.plan_json(q, plans.get(q, {}))})
    final = untrusted.dumps({q: plans[q] for q in plans})
    return steps, final


def prepare(folder: Path, assignment: au.Assignment, plans: dict[str, dict] | None = None) -> Prepared:
    """All the steps above: a Prepared with ``cells`` and ``steps`` set, or ``invalid`` said."""
    prep, nb = read_submission(folder, assignment)
    if nb is None:
        return prep
    cells = restore_protected(prep, nb, assignment)
    if not any(au.is_parameters_cell(c) for c, _ in cells):
        prep.invalid = "the parameters cell is missing"  # cannot happen: it is protected and restored
        return prep
    scan(prep, cells, assignment)
    prep.cells = cells
    prep.steps, prep.final = plan_steps(cells, assignment, plans if plans is not None else pl.compile_exports(assignment))
    return prep
