"""Turn a student's submission into the notebook the sandbox runs (grader side, no student code).

Steps, each a small function (nbgrader-preprocessor style):

1. :func:`read_submission` -- find the notebook, check it is JSON of nbformat 4 (else ``invalid``);
2. :func:`restore_protected` -- compare every protected cell with the grader's own student
   version (rebuilt from the source, never taken from the submission's metadata): altered ones
   are replaced by the released text, deleted ones re-inserted, and both flag the submission;
3. :func:`scan` -- look at the student's code for grader-tampering patterns (flags, never points);
4. :func:`inject` -- drop the test cells, clear outputs, add the tripwire cell first, one export
   cell after each question's tests and the final export cell last.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labkit.grading import authoring as au
from labkit.grading import release as rel

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024

SUSPICIOUS = [
    (r"\b__builtins__\b|\bimport\s+builtins\b|\bbuiltins\s*\.", "touches builtins"),
    (r"\bsys\.modules\b|\bimportlib\b", "edits the import system"),
    (r"\bget_ipython\s*\(|\bIPython\b", "uses IPython's internals (hooks, transformers)"),
    (r"\bctypes\b|\bgc\.get_(referrers|objects)\b", "uses ctypes or gc introspection"),
    (r"\b__import__\b|(?<![\w.])(exec|eval|compile)\s*\(", "runs code built at run time (exec, eval, __import__)"),
    (r"/proc/|\bptrace\b", "reads other processes through /proc"),
    (r"\blabkit\b(?!\s+import\s+check\b)(?!\.check\b)", "refers to labkit, the grader"),
    (r"\bsys\.(settrace|setprofile|_getframe)\b|\binspect\.", "traces or inspects frames"),
    (r"\b(np|numpy|math)\.[A-Za-z_][\w.]*\s*=(?!=)", "assigns to a numpy/math attribute (monkeypatching)"),
    (r"\bsetattr\s*\(\s*(np|numpy|math|builtins|json)\b", "monkeypatches a module"),
    (r"\bsocket\b|\burllib\b|\brequests\b|\bhttp\.client\b", "opens network connections"),
    (r"\bsubprocess\b|\bos\.(system|popen|fork|exec\w*|spawn\w*|kill)\b", "starts or signals processes"),
    (r"\.labkit\b", "touches the grader's results folder"),
]


@dataclass
class Prepared:
    """What the grader knows about a submission before running it."""

    student: str
    digest: str                                    # sha256 of the submitted bytes (or "missing")
    notebook: nbformat.NotebookNode | None = None  # the notebook the sandbox runs
    invalid: str | None = None                     # why it cannot be graded at all
    notes: list[str] = field(default_factory=list)  # plain facts for the reason column
    flags: list[str] = field(default_factory=list)  # reasons to flag it for review


def read_submission(folder: Path, assignment: au.Assignment) -> tuple[Prepared, nbformat.NotebookNode | None]:
    student = folder.name
    path = folder / assignment.notebook
    notes = []
    if not path.is_file():
        found = sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.is_symlink())
        if len(found) == 1:
            notes.append(f"the notebook was named {found[0].name!r}, not {assignment.notebook!r}; graded it anyway")
            path = found[0]
        else:
            why = (f"no notebook named {assignment.notebook!r}" if not found else
                   f"no notebook named {assignment.notebook!r}, and {len(found)} others: cannot tell which to grade")
            return Prepared(student, "missing", invalid=why), None
    if path.is_symlink() or path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return Prepared(student, "too-large", invalid="the notebook is a link or larger than 20 MB"), None
    raw = path.read_bytes()
    prep = Prepared(student, hashlib.sha256(raw).hexdigest()[:16], notes=notes)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        prep.invalid = f"the notebook is not valid JSON ({exc}); was it saved completely?"
        return prep, None
    if not isinstance(doc, dict) or doc.get("nbformat") != 4:
        got = doc.get("nbformat") if isinstance(doc, dict) else type(doc).__name__
        prep.invalid = f"the notebook has nbformat {got!r}; expected 4 (save it from JupyterLab)"
        return prep, None
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 -- nbformat's ValidationError and friends
        prep.invalid = f"the notebook's structure is not valid nbformat 4: {str(exc).splitlines()[0][:200]}"
        return prep, None
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
    for n, (cell, key) in enumerate(cells, 1):
        if cell.cell_type != "code" or (key is not None and kinds.get(key) != "answer"):
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("#"))
        for pattern, what in SUSPICIOUS:
            if re.search(pattern, code):
                found.setdefault(what, n)
    for what, n in found.items():
        prep.flags.append(f"cell {n} {what}")


def _code(source: str, **meta) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["labkit"] = {"injected": True, **meta}
    return cell


def inject(cells: list, assignment: au.Assignment) -> nbformat.NotebookNode:
    """The notebook the sandbox runs: no test cells, no outputs, export cells added."""
    exports = assignment.exports()
    last_test = {}
    for t_cell_key in [c.metadata["labkit"]["key"] for c in rel.student_cells(assignment)
                       if c.metadata["labkit"]["kind"] == "test"]:
        last_test[t_cell_key[len("test-"):].rsplit("-", 1)[0]] = t_cell_key
    # a question whose last visible test comes before ... is exported right after it; questions
    # with hidden tests only are exported after the cell that precedes their first hidden test
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
    mod = "__import__('labkit.grading.export', fromlist=['dump'])"
    out = [_code(f"{mod}.guard_start()  # labkit: tripwire (added by the grader)")]
    for n, (cell, key) in enumerate(cells, 1):
        kind = (cell.metadata.get("labkit") or {}).get("kind")
        if not (key and key.startswith("test-")) and kind != "test":
            cell = nbformat.from_dict(json.loads(json.dumps(cell)))
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            cell.metadata.setdefault("labkit", {})
            cell.metadata["labkit"] = {**dict(cell.metadata["labkit"]), "student_cell": n}
            cell.metadata.pop("papermill", None)
            out.append(cell)
        for q in after.get(key, []) if key else []:
            out.append(_code(f"{mod}.dump({q!r}, {exports.get(q, {})!r}, globals())  # labkit: export {q}",
                             question=q))
    out.append(_code(f"{mod}.finish(globals(), {exports!r})  # labkit: final export"))
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    nb.cells = out
    for c in nb.cells:
        c.pop("id", None)
    nb.nbformat_minor = 4
    return nb


def prepare(folder: Path, assignment: au.Assignment) -> Prepared:
    """All the steps above: a Prepared with ``notebook`` set, or ``invalid`` said."""
    prep, nb = read_submission(folder, assignment)
    if nb is None:
        return prep
    cells = restore_protected(prep, nb, assignment)
    if not any(au.is_parameters_cell(c) for c, _ in cells):
        prep.invalid = "the parameters cell is missing"  # cannot happen: it is protected and restored
        return prep
    scan(prep, cells, assignment)
    prep.notebook = inject(cells, assignment)
    return prep
