"""Grading without a kernel: authoring, release, export plans, decoding, gradebook, detection, feedback.

Fast unit tests (no sandbox, no notebook runs). The hostile-input suite is in
``test_grading_hostile.py``; sandbox and batch behaviour in ``test_grading_sandbox.py`` and
``test_grading_batch.py``.
"""
from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
from grading_fixtures import HIDDEN_INPUT, SECRET, make_assignment

from labkit.grading import authoring as au
from labkit.grading import batch, checks, detect, export, feedback
from labkit.grading import plans as pl
from labkit.grading import release as rel
from labkit.grading.gradebook import Gradebook


def test_authoring_parses_tests_points_and_exports(tmp_path):
    a = au.load_assignment(make_assignment(tmp_path / "hw"))
    assert [t.id for t in a.tests] == ["q1.1", "q1.2", "q2.1", "q2.2", "q3.1"]
    assert a.max_score == 7 and [t.hidden for t in a.tests] == [False, True, False, True, True]
    assert a.exports() == {"q1": {"t": "total(data)", "t2": HIDDEN_INPUT},
                           "q2": {"squares": "squares"}, "q3": {"answer": "answer"}}


def test_authoring_errors_are_plain(tmp_path):
    folder = make_assignment(tmp_path / "hw")
    nb = nbformat.read(folder / "hw.ipynb", 4)
    nb.cells[3].source = "### BEGIN SOLUTION\nx = 1\n"
    nbformat.write(nb, folder / "hw.ipynb")
    with pytest.raises(au.AuthoringError, match="not closed"):
        au.load_assignment(folder)


def test_release_hides_solutions_and_hidden_tests(tmp_path):
    from labkit import hygiene
    from labkit.grading import cli

    folder = make_assignment(tmp_path / "hw")
    assert cli.main(["release", str(folder), "--out", str(tmp_path / "rel")]) == 0
    text = (tmp_path / "rel" / "hw" / "hw.ipynb").read_text()
    assert SECRET not in text and "HIDDEN TEST" not in text and HIDDEN_INPUT not in text
    assert "return float(np.sum(x))" not in text and "squares = data ** 2" not in text
    assert "BEGIN SOLUTION" not in text and "BEGIN PROMPT" not in text
    nb = nbformat.read(tmp_path / "rel" / "hw" / "hw.ipynb", 4)
    assert hygiene.problems(nb) == []  # outputs cleared, title and parameters cell first
    sources = [c.source for c in nb.cells]
    assert "squares = ..." in sources and any("NotImplementedError" in s for s in sources)
    kinds = {c.metadata["labkit"]["key"]: c.metadata["labkit"] for c in nb.cells}
    assert kinds["code-2"]["fingerprint"] == au.fingerprint(nb.cells[2].source)
    manifest = json.loads((tmp_path / "rel" / "hw" / "release.json").read_text())
    assert manifest["max_score"] == 7 and manifest["hidden_tests"] == 3 and manifest["visible_tests"] == ["q1.1", "q2.1"]


# --- export plans: what the kernel is asked, without the test's text ------------------------------
def test_a_hidden_uses_expression_reaches_the_kernel_only_as_plain_inputs(tmp_path):
    a = au.load_assignment(make_assignment(tmp_path / "hw"))
    plans = pl.compile_exports(a)
    assert plans["q1"]["t2"] == {"call": {"name": "total"}, "args": [
        {"v": {"__ndarray__": {"dtype": "<f8", "shape": [5], "data": [1.0] * 5}}}], "kw": {}}
    sent = pl.plan_json("q1", plans["q1"]) + json.dumps(plans)
    assert HIDDEN_INPUT not in sent and "np.ones" not in sent and "ones" not in sent
    # the kernel side evaluates the plan on the student's names and gives the same value as the text
    ns = {"total": lambda x: float(np.sum(x)), "data": np.arange(4.0)}
    assert export.evaluate(plans["q1"]["t2"], ns) == eval(HIDDEN_INPUT, {"np": np, **ns}) == 5.0


@pytest.mark.parametrize("expr", [
    "normalize(np.array([[2.0, 4.0], [6.0, 8.0]]))",
    "model.predict(x[1:3], verbose=0).shape",
    "f(3) + g(y) * 2 - -h(1)",
    "scale({'a': [1, 2]}, axis=(0, 1))[0] == 1.5",
    "len(names) in {1, 2}",
    "np.linalg.norm(v)",
    "apply(np.sum, [1, 2])",
])
def test_plans_agree_with_evaluating_the_text(expr):
    ns = {"normalize": lambda x: (x - x.mean()) / x.std(), "x": np.arange(6.0), "names": ["a"],
          "model": type("M", (), {"predict": lambda self, x, verbose: np.ones((len(x), 2))})(),
          "f": lambda v: v * 2, "g": lambda v: v + 1, "h": lambda v: v, "y": 4,
          "scale": lambda d, axis: [1.5, axis], "v": np.array([3.0, 4.0]), "apply": lambda fn, xs: fn(xs)}
    plan = pl.compile_expression(expr)
    assert "eval" not in json.dumps(plan)
    want = eval(expr, {"np": np, **ns})
    got = export.evaluate(json.loads(json.dumps(plan)), ns)
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_a_hidden_test_that_would_need_code_in_the_kernel_is_an_authoring_error():
    with pytest.raises(au.AuthoringError, match="lambda or comprehension"):
        pl.compile_expression("[f(i) for i in range(3)]", hidden=True)
    assert pl.compile_expression("[f(i) for i in range(3)]", hidden=False) == {"eval": "[f(i) for i in range(3)]"}


# --- decoding exported values ---------------------------------------------------------------------
def test_position_export_wins_over_the_final_one():
    at_tests = json.dumps({"values": {"a": {"value": 1}, "b": {"error": "NameError: b"}}})
    final = {"values": {"a": {"value": 2}, "b": {"value": 3}}}
    assert checks.load_values([at_tests, final]) == ({"a": 1, "b": 3}, {})
    assert checks.load_values(["not json", json.dumps({"values": [1]}), at_tests])[0] == {"a": 1}


@pytest.mark.parametrize("value, ok", [
    ({"__ndarray__": {"dtype": "<f8", "shape": [2], "data": [1.0, 2.0]}}, True),
    ({"__ndarray__": {"dtype": "|O", "shape": [2], "data": [1, 2]}}, False),       # object arrays
    ({"__ndarray__": {"dtype": "<f8", "shape": [3], "data": [1.0, 2.0]}}, False),  # shape lies
    ({"__ndarray__": {"dtype": "<i1", "shape": [1], "data": [10 ** 30]}}, False),  # too large for the dtype
    ({"__ndarray__": {"dtype": "<f8", "shape": [10 ** 12, 10 ** 12], "data": []}}, False),  # absurd shape
    ({"__ndarray__": {"dtype": "(1000000000,)f8", "shape": [1], "data": [1]}}, False),  # sub-array dtype
    ({"__ndarray__": {"dtype": "<c16", "shape": [1], "data": [[1.0]]}}, False),     # complex without imag
    ({"__bigint__": "9" * 399}, True),
    ({"__bigint__": "1e5"}, False),
    ({"__unsupported__": "AlwaysEqual"}, False),
    ({"__dict__": {"a": [1, 2, {"__float__": "nan"}]}}, True),
    ({"x": 1, "y": 2}, False),                                                     # untagged dicts
])
def test_exported_values_are_decoded_strictly(value, ok):
    if ok:
        checks.decode(value)
    else:
        with pytest.raises((checks.BadValue, ValueError, TypeError)):
            checks.decode(value)


def test_an_always_equal_object_cannot_reach_the_tests():
    class Yes:
        def __eq__(self, other):
            return True
    encoded = json.loads(json.dumps(export.encode(Yes())))
    tests = [{"id": "q.1", "question": "q", "points": 1, "message": "m", "hidden": True, "uses": {},
              "needs": ["v"], "body": "assert v == 3\n"}]
    res = checks.grade_values(tests, {"q": [json.dumps({"values": {"v": {"value": encoded}}})]})
    # the student is told why their value never reached the test (not the test's code)
    assert res[0]["passed"] is False and "cannot receive" in res[0]["message"]
    assert "assert" not in res[0]["message"]


def test_data_items_must_stay_inside_the_assignment(tmp_path):
    folder = make_assignment(tmp_path / "hw")
    (folder / "data").mkdir()
    (folder / "data" / "x.csv").write_text("1,2")
    assert batch.allowed_data(au.load_assignment(folder)) == {}
    (folder / "assignment.json").write_text(json.dumps({"data": ["data/x.csv"]}))
    assert batch.allowed_data(au.load_assignment(folder)) == {"data/x.csv": (folder / "data" / "x.csv").resolve()}
    for bad in (["../hw/hw.ipynb"], ["hw.ipynb"], ["/etc"], ["missing.csv"]):
        (folder / "assignment.json").write_text(json.dumps({"data": bad}))
        with pytest.raises(au.AuthoringError):
            batch.allowed_data(au.load_assignment(folder))


def test_gradebook_is_wal_idempotent_and_keeps_overrides(tmp_path):
    rows = [{"test_id": "q1.1", "question": "q1", "hidden": False, "passed": True, "points": 1, "max_points": 1,
             "message": "passed"},
            {"test_id": "q1.2", "question": "q1", "hidden": True, "passed": False, "points": 0, "max_points": 2,
             "message": "no"}]
    with Gradebook(tmp_path / "gb.sqlite") as gb:
        assert gb.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        gb.record("hw", "alice", "d1", "t1", "graded", "", 3, 1.0, rows)
        first = [dict(r) for r in gb.db.execute("SELECT * FROM results")]
        gb.record("hw", "alice", "d1", "t1", "graded", "", 3, 1.0, rows)
        assert [dict(r) for r in gb.db.execute("SELECT * FROM results")] == first
        assert gb.is_current("hw", "alice", "d1", "t1") and not gb.is_current("hw", "alice", "d2", "t1")
        gb.set_override("hw", "alice", "q1.2", 1.5, "partial credit")
        gb.record("hw", "alice", "d2", "t1", "graded", "", 3, 1.0, rows)  # a re-grade
        assert gb.submission("hw", "alice")["score"] == 2.5
        assert [r["overridden"] for r in gb.results("hw", "alice")] == [False, True]
        # text from outside that SQLite would refuse (lone surrogates) is stored escaped
        gb.record("hw", "bad\udcff", "d1", "t1", "crashed", "reason \ud800", 3, 1.0,
                  [{**rows[0], "message": "evalue \udc80"}])
        assert gb.submission("hw", "bad\\udcff")["reason"] == "reason \\ud800"


def test_check_reads_notebook_tests_and_explains(tmp_path, capsys):
    from labkit.check import check

    folder = make_assignment(tmp_path / "hw")
    rel.release(folder, tmp_path / "rel")
    nb_path = tmp_path / "rel" / "hw" / "hw.ipynb"
    ns = {"np": np, "data": np.arange(4.0), "total": lambda x: float(np.sum(x)) + 1}
    result = check("q1", notebook=nb_path, namespace=ns)
    out = capsys.readouterr().out
    assert not result and "✗ q1.1" in out and "t = 7.0" in out
    ns["total"] = lambda x: float(np.sum(x))
    assert check("q1", notebook=nb_path, namespace=ns)
    assert not check("q2", notebook=nb_path, namespace=ns)
    assert "`squares` is not defined yet" in capsys.readouterr().out


def test_check_runs_a_lab_exercise_kept_in_a_raw_cell(tmp_path, capsys):
    from labkit.check import check

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Lab"),
                nbformat.v4.new_raw_cell("# TEST ex1 (1 point): side should be 24\nassert side == 28 - 5 + 1")]
    path = tmp_path / "lab.ipynb"
    nbformat.write(nb, path)
    assert not check("ex1", notebook=path, namespace={"side": None})
    assert "✗ ex1.1" in capsys.readouterr().out
    assert check("ex1", notebook=path, namespace={"side": 24})


# --- detection: the flagging scan reads code as Python does --------------------------------------
@pytest.mark.parametrize("code, finding", [
    ("import ｓｏｃｋｅｔ", "opens network connections"),                       # NFKC identifiers
    ("import ｂｕｉｌｔｉｎｓ as b", "touches builtins"),
    ("from ｓｕｂｐｒｏｃｅｓｓ import run", "starts or signals processes"),
    ("import sys\nm = sys.modules['lab' + 'kit.grading.export']", "refers to labkit, the grader"),
    ("import sys\nsys.modules['so' 'cket']", "opens network connections"),
    ("__import__(''.join(['so', 'cket']))", "opens network connections"),       # names built from strings
    ("import importlib as i\ni.import_module(f'{\"sub\"}process')", "starts or signals processes"),
    ("x = 'tekcos'[::-1]", "opens network connections"),
    ("x = chr(115) + 'ocket'", "opens network connections"),
    ("import numpy as n\nn.allclose = lambda *a, **k: True", "assigns to an attribute of numpy"),  # aliases
    ("import numpy\nalias = numpy\nalias.allclose = None", "assigns to an attribute of numpy"),
    ("from numpy import testing as t\nt.assert_allclose = None", "assigns to an attribute of numpy.testing"),
    ("import numpy as np\nsetattr(np, 'isclose', None)", "assigns to an attribute of numpy"),
    ("import numpy as np\nnp.__dict__['allclose'] = None", "assigns to an attribute of numpy"),
    ("import math as m\nvars(m)['sqrt'] = abs", "assigns to an attribute of math"),
    ("f = eval\nf('1 + 1')", "runs code built at run time"),
    ("list(map(exec, ['x = 1']))", "runs code built at run time"),
    ("import sys as s\ns.settrace(print)", "traces or inspects frames"),
    ("b = __builtins__\nb.abs = None", "touches builtins"),
    ("open('/pr' + 'oc/1/mem')", "reads other processes through /proc"),
    ("!ls /", "uses IPython's internals"),                                      # IPython syntax
])
def test_the_scan_normalises_resolves_and_folds_like_python(code, finding):
    found = detect.Submission().cell(code)
    assert any(finding in f for f in found), found


@pytest.mark.parametrize("code", [
    "import numpy as np\nx = np.allclose([1], [1])",
    "requests = []\nrequests.append(1)",
    "import pandas as pd\npd.options.display.max_rows = 5",
    "import os\npath = os.path.join('a', 'b')",
    "from labkit import check\ncheck('q1')",
    "def total(x):\n    return float(sum(x))",
    "s = 'socket'  # only a word",
])
def test_the_scan_leaves_ordinary_code_alone(code):
    assert detect.Submission().cell(code) == []


def test_aliases_carry_over_between_cells():
    scan = detect.Submission()
    assert scan.cell("import numpy as n") == []
    assert any("numpy" in f for f in scan.cell("n.allclose = None"))


# --- feedback -------------------------------------------------------------------------------------
def test_feedback_leaves_out_tensorflow_start_up_noise_but_keeps_real_errors():
    noise = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             "I0000 00:00:1795595742.953078       3 port.cc:153] oneDNN custom operations are on.\n")
    assert feedback.render_output({"output_type": "stream", "name": "stderr", "text": noise}) == ""
    kept = feedback.render_output({"output_type": "stream", "name": "stderr", "text": noise + "ValueError: <bad>\n"})
    assert "ValueError: &lt;bad&gt;" in kept and "oneDNN" not in kept
    assert "oneDNN" in feedback.render_output({"output_type": "stream", "name": "stdout", "text": noise})


def test_feedback_cuts_out_verbatim_hidden_test_text(tmp_path):
    a = au.load_assignment(make_assignment(tmp_path / "hw"))
    plans = pl.compile_exports(a)
    secrets = feedback.hidden_texts(a, plans)
    leaked = (f"t2 = {HIDDEN_INPUT}\nassert np.allclose(squares, [0, 1, 4, 9])\n"
              f"export({pl.plan_json('q1', plans['q1'])!r}, globals())")
    page = feedback.render_notebook({"cells": [{"cell_type": "code", "source": "print(stolen)", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": leaked}]}]}, secrets)
    assert HIDDEN_INPUT not in page and "allclose(squares" not in page and '"call"' not in page
    assert page.count(feedback.HIDDEN) >= 3
