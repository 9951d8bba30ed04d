"""``check("q1")``: run a question's visible tests on your variables and explain what is wrong.

In a notebook::

    from labkit import check
    check("q1")

It finds the cells of this notebook that start with ``# TEST q1`` (the visible tests), runs each
on your live variables (a copy of them: nothing you defined is changed), and prints one line per
test: passed, or what went wrong in plain words. Hidden tests are not in your notebook: only the
grader runs them.

Lab notebooks use the same mechanism for their exercises (``check("conv1")``), with one
difference: there the test is a *raw* cell, which Jupyter shows but never runs, so that a lab
notebook still runs from top to bottom (papermill, CI) before the student has answered.

Returns a :class:`CheckResult` (``bool(result)`` is True when every test passed).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["check", "CheckResult"]


@dataclass
class CheckResult:
    """What :func:`check` found: one ``(test, passed, explanation)`` per visible test."""

    question: str
    results: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.results) and all(ok for _, ok, _ in self.results)

    def __repr__(self) -> str:
        passed = sum(ok for _, ok, _ in self.results)
        return f"<check {self.question}: {passed}/{len(self.results)} visible tests passed>"


def _candidate_notebooks(notebook: str | os.PathLike | None, namespace: dict) -> list[Path]:
    if notebook:
        return [Path(notebook)]
    found = []
    session = namespace.get("__session__") or os.environ.get("JPY_SESSION_NAME")
    if session and str(session).endswith(".ipynb"):
        found.append(Path(session))
    found += sorted(Path.cwd().glob("*.ipynb"))
    return found


def _tests_in(path: Path, question: str):
    import nbformat

    from labkit.grading import authoring as au

    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):  # missing, or not a notebook (nbformat's NotJSONError is a ValueError)
        return []
    tests, counters = [], {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type not in ("code", "raw"):  # raw: a lab exercise's test, never run by itself
            continue
        m = au.TEST_RE.match(au.first_line(cell))
        if m and m.group(2) == question and not m.group(1):
            tests.append(au.parse_test(cell, i, counters))
    return tests


def _caller_namespace() -> dict:
    try:
        ip = get_ipython()  # noqa: F821 -- inside IPython/Jupyter
        return ip.user_ns
    except NameError:
        return sys._getframe(2).f_globals


def check(question: str, notebook: str | os.PathLike | None = None, namespace: dict | None = None,
          quiet: bool = False) -> CheckResult:
    """Run the visible tests of ``question`` (e.g. ``"q1"``) on your variables; print what failed."""
    from labkit.grading.checks import run_test

    namespace = namespace if namespace is not None else _caller_namespace()
    tests = []
    for path in _candidate_notebooks(notebook, namespace):
        tests = _tests_in(path, question)
        if tests:
            break
    result = CheckResult(question)
    if not tests:
        if not quiet:
            print(f"No visible tests named {question!r} in this notebook (looked for cells starting "
                  f"with '# TEST {question}'). Check the question's name.")
        return result
    for t in tests:
        ns = dict(namespace)
        ok, why = True, None
        for name, expr in t.uses.items():
            try:
                ns[name] = eval(expr, ns)  # noqa: S307 -- the student's own code, in their kernel
            except BaseException as exc:  # noqa: BLE001
                from labkit.grading.checks import explain
                ok, why = False, f"computing `{name} = {expr}` failed: " + explain(exc, expr, ns)
                break
        if ok:
            ok, why = run_test(t.body, ns)
        result.results.append((t.id, ok, why))
        if not quiet:
            head = f"{t.id} ({t.points:g} point{'s' if t.points != 1 else ''})"
            print(f"✓ {head}: {t.message}" if ok else f"✗ {head}: {t.message}\n    {why}")
    if not quiet:
        n = sum(ok for _, ok, _ in result.results)
        print(f"{question}: {n} of {len(result.results)} visible tests passed."
              + ("" if n < len(result.results) else " Hidden tests will check more when it is graded."))
    return result
