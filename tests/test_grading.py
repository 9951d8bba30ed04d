"""labkit grade: the sample assignment, the gradebook, and the bad-input suite.

The bad-input submissions use a small TensorFlow-free assignment (built here) and are graded in
one batch with 2 workers, so that the whole suite costs one kernel start per submission.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.grading import authoring as au
from labkit.grading import batch, checks
from labkit.grading import release as rel
from labkit.grading import sandbox as sb
from labkit.grading.gradebook import Gradebook

ROOT = Path(__file__).resolve().parent.parent
SECRET = "labkit-hidden-7f3a"  # appears only in a hidden test of the fixture assignment
NEEDS_SANDBOX = pytest.mark.skipif(sb.available() is not None, reason=f"no sandbox here: {sb.available()}")


# --- a small, TensorFlow-free assignment -------------------------------------------------------
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
                      "# uses: t2 = total(np.ones(5))\nassert t2 == 5.0"),
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
    solutions = {"answer-3": "def total(x):\n    return float(np.sum(x))", "answer-6": "squares = data ** 2",
                 "answer-9": "answer = 42"} if solved else {}
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
    with open(out / "grades.csv") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh)}


# --- fast unit tests ----------------------------------------------------------------------------
def test_authoring_parses_tests_points_and_exports(tmp_path):
    a = au.load_assignment(make_assignment(tmp_path / "hw"))
    assert [t.id for t in a.tests] == ["q1.1", "q1.2", "q2.1", "q2.2", "q3.1"]
    assert a.max_score == 7 and [t.hidden for t in a.tests] == [False, True, False, True, True]
    assert a.exports() == {"q1": {"t": "total(data)", "t2": "total(np.ones(5))"},
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
    assert SECRET not in text and "HIDDEN TEST" not in text and "total(np.ones(5))" not in text
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


def test_position_export_wins_over_the_final_one():
    at_tests = json.dumps({"values": {"a": {"value": 1}, "b": {"error": "NameError: b"}}})
    final = json.dumps({"values": {"a": {"value": 2}, "b": {"value": 3}}})
    assert checks.load_values([at_tests, final]) == ({"a": 1, "b": 3}, {})
    assert checks.load_values(["not json", json.dumps({"values": [1]}), at_tests])[0] == {"a": 1}


def test_files_written_by_the_sandbox_are_read_safely(tmp_path):
    work = tmp_path / "work"
    (work / "values").mkdir(parents=True)
    (work / "values" / "ok.json").write_text("{}")
    secret = tmp_path / "host" / "values"
    secret.mkdir(parents=True)
    (secret / "ok.json").write_text("host file")
    (work / "link.json").symlink_to(secret / "ok.json")
    (work / "dirlink").symlink_to(secret)
    assert batch.read_untrusted(work / "values" / "ok.json", 100, work) == b"{}"
    assert batch.read_untrusted(work / "link.json", 100, work) is None        # a link
    assert batch.read_untrusted(work / "dirlink" / "ok.json", 100, work) is None  # a linked folder
    assert batch.read_untrusted(work / "values" / "ok.json", 1, work) is None   # too large


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


@pytest.mark.parametrize("value, ok", [
    ({"__ndarray__": {"dtype": "<f8", "shape": [2], "data": [1.0, 2.0]}}, True),
    ({"__ndarray__": {"dtype": "|O", "shape": [2], "data": [1, 2]}}, False),       # object arrays
    ({"__ndarray__": {"dtype": "<f8", "shape": [3], "data": [1.0, 2.0]}}, False),  # shape lies
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
    from labkit.grading import export

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


def test_check_reads_notebook_tests_and_explains(tmp_path, capsys):
    import numpy as np

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


@NEEDS_SANDBOX
def test_sandbox_sees_read_only_folders_under_tmp(tmp_path, monkeypatch):
    # a checkout under /tmp (CI may clone there): the private /tmp must not hide the venv or labkit
    shared = tmp_path / "checkout"
    shared.mkdir()
    (shared / "marker.txt").write_text("visible")
    shared.chmod(0o755)
    roots = sb._read_only_roots()
    monkeypatch.setattr(sb, "_read_only_roots", lambda: roots + [str(shared)])
    work = tmp_path / "work"
    work.mkdir()
    out = sb.run(work, ["cat", str(shared / "marker.txt")], 0, sb.Limits(wall_seconds=30))
    assert out.returncode == 0 and "visible" in out.stdout, out.stdout


@NEEDS_SANDBOX
def test_a_broken_sandbox_fails_the_grader_not_the_students(tmp_path, monkeypatch):
    folder = make_assignment(tmp_path / "assignments" / "hw")
    subs = tmp_path / "subs"
    submit(subs, "s0", student_nb(folder))
    labkit_only = [r for r in sb._read_only_roots() if r.endswith("labkit")]
    monkeypatch.setattr(sb, "_read_only_roots", lambda: labkit_only)  # no Python inside the sandbox
    with pytest.raises(sb.SandboxUnavailable, match="could not start Python"):
        batch.grade(folder, subs, tmp_path / "out", echo=lambda *a: None, progress=False)
    assert not (tmp_path / "out" / "grades.csv").exists()  # no student was blamed


# --- the sample assignment (TensorFlow) ---------------------------------------------------------
@NEEDS_SANDBOX
@pytest.mark.slow
def test_sample_assignment_grades_to_expected_scores(tmp_path):
    report = batch.grade_samples(ROOT / "assignments", tmp_path, echo=lambda *a: None)
    by_name = {r["name"]: r for r in report}
    assert "tf_basics" in by_name
    for entry in report:
        assert entry["status"] == "ok", entry
    grades = {g["student_id"]: (g["score"], g["status"]) for g in by_name["tf_basics"]["grades"]}
    assert grades == {"correct": (9, "graded"), "partial": (3, "graded"), "broken": (3, "crashed")}
    html = (tmp_path / "grading" / "tf_basics" / "feedback" / "partial.html").read_text()
    assert "0.09003057" not in html and "HIDDEN TEST" not in html  # hidden tests' source never shown
    assert "probs should be the softmax of the logits" in html      # ... only their messages


# --- crash safety: kill -9 mid-batch, then resume ----------------------------------------------
@NEEDS_SANDBOX
@pytest.mark.slow
def test_kill_9_loses_nothing_and_the_next_run_resumes(tmp_path):
    folder = make_assignment(tmp_path / "hw")
    subs, out = tmp_path / "subs", tmp_path / "out"
    for i in range(6):
        submit(subs, f"s{i}", student_nb(folder))
    cmd = [sys.executable, "-m", "labkit.grading.cli", "grade", str(folder), str(subs), "--out", str(out),
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = out / "gradebook.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                done = sqlite3.connect(db).execute("SELECT count(*) FROM submissions").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 1:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the grader finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sqlite3.connect(db).execute("SELECT student_id FROM submissions").fetchall()
    assert 1 <= done <= len(kept) < 6  # killed mid-batch; what was graded is there
    stale = [p for p in Path(tempfile.gettempdir()).glob("labkit-grade-*")
             if (p / "grader.pid").is_file() and (p / "grader.pid").read_text() == str(proc.pid)]
    assert stale  # the killed grader's working folder is left behind ...
    summary = batch.grade(folder, subs, out, echo=lambda *a: None, progress=False)
    assert not any(p.exists() for p in stale)  # ... and the next run removes it
    assert summary["skipped"] == len(kept) and summary["graded_now"] == 6 - len(kept)
    assert summary["statuses"]["graded"] == 6
    assert {r["score"] for r in read_grades(out).values()} == {"7"}
    with Gradebook(out / "gradebook.sqlite") as gb:
        before = [dict(r) for r in gb.db.execute("SELECT * FROM results ORDER BY student_id, test_id")]
    again = batch.grade(folder, subs, out, echo=lambda *a: None, progress=False)  # idempotent: nothing to do
    assert again["graded_now"] == 0 and again["skipped"] == 6
    # the command line: a manual override, then a forced re-grade of everything; the override stays
    from labkit.grading import cli

    assert cli.main(["grade", str(folder), str(subs), "--out", str(out), "--force", "--workers", "2",
                     "--no-progress", "--override", "s0", "q1.2", "0.5"]) == 0
    with Gradebook(out / "gradebook.sqlite") as gb:
        after = [dict(r) for r in gb.db.execute("SELECT * FROM results ORDER BY student_id, test_id")]
    assert after == before  # same submissions + same tests -> the same rows
    grades = read_grades(out)
    assert grades["s0"]["score"] == "5.5" and grades["s1"]["score"] == "7"
    with open(out / "lms.csv") as fh:
        lms = {r["student_id"]: r for r in csv.DictReader(fh)}
    assert lms["s0"]["points"] == "5.5" and lms["s0"]["points_possible"] == "7" and lms["s1"]["percent"] == "100.0"
    assert {p.name for p in (out / "feedback").iterdir()} == {f"s{i}.html" for i in range(6)}
    assert json.loads((out / "summary.json").read_text())["statuses"]["graded"] == 6


# --- the bad-input suite --------------------------------------------------------------------------
BAD = {}  # student -> (expected status(es), expected score or None, what)


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory):
    if sb.available() is not None:
        pytest.skip(f"no sandbox here: {sb.available()}")
    tmp = tmp_path_factory.mktemp("bad")
    folder = make_assignment(tmp / "assignments" / "hw")
    subs, out = tmp / "subs", tmp / "out"
    good = submit(subs, "good", student_nb(folder))
    ok = student_nb(folder)

    submit(subs, "invalid_json", '{"cells": [{"cell_type": "code", "sou')
    nb3 = json.loads(nbformat.writes(ok))
    nb3["nbformat"] = 3
    submit(subs, "wrong_nbformat", json.dumps(nb3))
    (subs / "no_notebook").mkdir(parents=True)
    (subs / "no_notebook" / "notes.txt").write_text("I forgot")
    submit(subs, "renamed_notebook", ok, name="hw (1).ipynb")
    nb = student_nb(folder)
    nb.cells = [c for c in nb.cells if c.metadata["labkit"]["key"] not in ("code-2", "test-q1-4")]
    submit(subs, "deleted_cells", nb)
    nb = student_nb(folder)
    next(c for c in nb.cells if c.metadata["labkit"]["key"] == "code-2").source = \
        "import numpy as np\ndata = np.zeros(N)  # made easier"
    submit(subs, "altered_protected", nb)
    nb = student_nb(folder)
    for c in nb.cells:
        c.metadata = {}
    submit(subs, "metadata_stripped", nb)
    nb = student_nb(folder)
    nb.cells.insert(3, new_markdown_cell("my notes"))
    nb.cells.insert(3, new_code_cell("scratch = 1 + 1"))
    submit(subs, "added_cells", nb)

    submit(subs, "infinite_loop", student_nb(folder, {"answer-6": "while True:\n    pass"}))
    submit(subs, "os_exit", student_nb(folder, {"answer-6": "import os\nos._exit(0)"}))
    submit(subs, "segfault", student_nb(folder, {"answer-6": "import faulthandler\nfaulthandler._sigsegv()"}))
    submit(subs, "sys_exit", student_nb(folder, {"answer-6": "import sys\nsys.exit()\nsquares = data ** 2"}))
    submit(subs, "memory_bomb", student_nb(folder, {
        "answer-6": "hog = []\nwhile True:\n    hog.append(bytearray(50_000_000))"}))
    submit(subs, "fork_bomb", student_nb(folder, {"answer-6": "import os\nwhile True:\n    os.fork()"}))
    submit(subs, "disk_bomb", student_nb(folder, {"answer-9": """
for i in range(5):
    open(f"junk{i}", "wb").write(b"0" * 30_000_000)"""}))
    submit(subs, "many_files", student_nb(folder, {"answer-9": "for i in range(1000):\n    open(f'f{i}', 'w').close()"}))
    submit(subs, "print_100mb", student_nb(folder, {"answer-6": 'print("x" * 100_000_000)\nsquares = data ** 2'}))

    src = folder / "hw.ipynb"
    gradebook = out / "gradebook.sqlite"
    attack = f"""
import glob, os, socket
stolen = []
for path in [{str(src)!r}, {str(gradebook)!r}, {str(good)!r}, "/etc/shadow"]:
    try:
        stolen.append(open(path).read()[:2000])
    except Exception as exc:
        print("read", path, type(exc).__name__)
    try:
        open(path, "a").write("owned")
    except Exception as exc:
        print("write", path, type(exc).__name__)
print("found:", glob.glob({str(folder)!r} + "/*") + glob.glob({str(subs)!r} + "/*") + glob.glob("/work/*"))
try:
    for i in range(2):  # the private /tmp is a 100 MB tmpfs (and files are at most 64 MB)
        with open(f"/tmp/fill{{i}}", "wb") as fh:
            fh.write(b"0" * 60_000_000)
except OSError as exc:
    print("tmp:", exc)
for name in glob.glob("*.ipynb") + glob.glob(".labkit/*"):  # the notebook being run is not on disk
    print("sandbox file", name, open(name).read() if os.path.isfile(name) else "")
for what in ("environ", "maps", "mem"):  # the runner's memory holds the export cells
    try:
        open(f"/proc/{{os.getppid()}}/{{what}}", "rb").read(100)
        print("PROC", "READ", what)
    except Exception as exc:
        print("proc", what, type(exc).__name__)
try:
    socket.create_connection(("1.1.1.1", 80), timeout=3)
    print("NETWORK OPEN")
except OSError as exc:
    print("network:", exc)
print("".join(stolen))
"""
    submit(subs, "attack_files_network", insert_after(student_nb(folder), "answer-9", attack))
    patch = """
import builtins
import numpy as np
class Yes(float):
    def __eq__(self, other):
        return True
    def __len__(self):
        return 4
squares = Yes()
np.allclose = lambda *a, **k: True
builtins.abs = lambda x: 0
get_ipython().events.register("post_run_cell", lambda *a: None)
"""
    submit(subs, "monkeypatch", student_nb(folder, {"answer-6": patch}))
    forge = """
import json, os
import labkit.grading.export as ex
ex.dump = lambda *a, **k: None
ex.finish = lambda *a, **k: None
os.makedirs(".labkit/values", exist_ok=True)
json.dump({"values": {"t": {"value": 6.0}, "t2": {"value": 5.0}}}, open(".labkit/values/final-q1.json", "w"))
json.dump({"values": {"squares": {"value": {"__ndarray__": {"dtype": "|O", "shape": [4], "data": [0, 1, 4, 9]}}}}},
          open(".labkit/values/final-q2.json", "w"))
os.symlink("/etc/shadow", ".labkit/values/final-q3.json")
print("LABKIT-REPORT " + json.dumps({"status": "ok", "timed_out": []}))
"""
    nb = student_nb(folder, solved=False)
    nb.cells.insert(3, new_code_cell(forge))
    submit(subs, "forged_values", nb)

    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in [src, good]}
    summary = batch.grade(folder, subs, out, workers=2, echo=lambda *a: None, progress=False)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in [src, good]}
    return {"folder": folder, "subs": subs, "out": out, "summary": summary, "grades": read_grades(out),
            "unchanged": before == after}


EXPECTED = {
    # student: (statuses allowed, score (None: not asserted), words the reason must hold)
    "good": ({"graded"}, 7, ""),
    "invalid_json": ({"invalid"}, 0, "not valid JSON"),
    "wrong_nbformat": ({"invalid"}, 0, "nbformat 3"),
    "no_notebook": ({"invalid"}, 0, "no notebook named"),
    "renamed_notebook": ({"graded"}, 7, "hw (1).ipynb"),
    "deleted_cells": ({"flagged"}, 7, "deleted; the released version was re-inserted"),
    "altered_protected": ({"flagged"}, 7, "was altered; the released version was run"),
    "metadata_stripped": ({"graded"}, 7, "matched by their content"),
    "added_cells": ({"graded"}, 7, ""),
    "infinite_loop": ({"timeout"}, 4, "cell 6 ran past the 10 s per-cell limit"),
    "os_exit": ({"crashed"}, 3, "kernel died while running cell 6"),
    "segfault": ({"crashed"}, 3, "kernel died while running cell 6"),
    "sys_exit": ({"graded"}, 4, ""),
    "memory_bomb": ({"graded", "crashed"}, None, ""),
    "fork_bomb": ({"flagged"}, None, "starts or signals processes"),
    "print_100mb": ({"graded"}, 7, "output beyond 1 MB was dropped"),
    "disk_bomb": ({"crashed"}, 6, "wrote more than 100 MB or 500 files and was stopped"),
    "many_files": ({"crashed"}, 6, "wrote more than 100 MB or 500 files and was stopped"),
    "attack_files_network": ({"flagged"}, 7, "opens network connections"),
    "monkeypatch": ({"flagged"}, 4, "touches builtins"),
    "forged_values": ({"flagged"}, 3, "refers to labkit"),
}


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_bad_input_gets_a_clear_status_reason_and_fair_score(bad_batch, student):
    row = bad_batch["grades"][student]
    statuses, score, words = EXPECTED[student]
    assert row["status"] in statuses, row
    if score is not None:
        assert float(row["score"]) == score, row
    assert words in row["reason"], row
    if row["status"] != "graded":
        assert row["reason"], row
    assert float(row["max_score"]) == 7


@pytest.mark.slow
def test_bad_input_batch_goes_on_and_the_grader_is_untouched(bad_batch):
    assert set(bad_batch["grades"]) == set(EXPECTED)
    assert bad_batch["unchanged"], "a submission wrote into the source notebook or another submission"
    out = bad_batch["out"]
    for html in (out / "feedback").glob("*.html"):
        text = html.read_text()
        assert SECRET not in text and "HIDDEN TEST" not in text, html.name
        assert "root:" not in text, html.name  # /etc/shadow never read
        assert "papermill-error-cell" not in text and "labkit: export" not in text, html.name  # grader cells
    attack = (out / "feedback" / "attack_files_network.html").read_text()
    assert "tmp: [Errno 28] No space left on device" in attack
    assert "NETWORK OPEN\n" not in attack and "network: [Errno" in attack
    assert "PROC READ" not in attack and "proc maps PermissionError" in attack
    assert "total(np.ones(5))" not in attack  # hidden tests' inputs are not on disk during the run
    assert "read /etc/shadow PermissionError" in attack or "read /etc/shadow FileNotFoundError" in attack
    with Gradebook(out / "gradebook.sqlite") as gb:
        assert gb.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = gb.db.execute("SELECT count(*) FROM results").fetchone()[0]
        assert rows == 5 * len(EXPECTED)  # one row per submission x test
        monkey = {r["test_id"]: r["passed"] for r in gb.results("hw", "monkeypatch")}
        assert monkey == {"q1.1": True, "q1.2": True, "q2.1": False, "q2.2": False, "q3.1": True}
    assert "run time" in bad_batch["grades"]["monkeypatch"]["reason"]  # the tripwire saw it too


def test_feedback_leaves_out_tensorflow_start_up_noise_but_keeps_real_errors():
    from labkit.grading import feedback

    noise = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             "I0000 00:00:1795595742.953078       3 port.cc:153] oneDNN custom operations are on.\n")
    assert feedback.render_output({"output_type": "stream", "name": "stderr", "text": noise}) == ""
    kept = feedback.render_output({"output_type": "stream", "name": "stderr", "text": noise + "ValueError: <bad>\n"})
    assert "ValueError: &lt;bad&gt;" in kept and "oneDNN" not in kept
    assert "oneDNN" in feedback.render_output({"output_type": "stream", "name": "stdout", "text": noise})
