"""``labkit grade`` end to end: the sample assignment, crash safety, and machinery failures.

Machinery failures (issue 10): a stall or crash of the grading machinery -- the kernel doesn't
start, the sandbox can't be set up, messages are lost, the notebook client dies -- is retried a
bounded number of times and never charged to the student as ``timeout``; a student's own infinite
loop still is. The faults are real ones, injected in the real path (``batch.FAULTS``): a kernel
module that doesn't exist, a bind mount whose source is missing, replies the client drops.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from grading_fixtures import ROOT, make_assignment, read_grades, student_nb, submit

from labkit.grading import batch
from labkit.grading import sandbox as sb
from labkit.grading.gradebook import Gradebook

NEEDS_SANDBOX = pytest.mark.skipif(sb.available() is not None, reason=f"no sandbox here: {sb.available()}")


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
    for i in range(4):
        submit(subs, f"s{i}", student_nb(folder))
    cmd = [sys.executable, "-I", "-m", "labkit.grading.cli", "grade", str(folder), str(subs), "--out", str(out),
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
    assert 1 <= done <= len(kept) < 4  # killed mid-batch; what was graded is there
    stale = [p for p in Path(tempfile.gettempdir()).glob("labkit-grade-*")
             if (p / "grader.pid").is_file() and (p / "grader.pid").read_text() == str(proc.pid)]
    assert stale  # the killed grader's working folder is left behind ...
    summary = batch.grade(folder, subs, out, echo=lambda *a: None, progress=False)
    assert not any(p.exists() for p in stale)  # ... and the next run removes it
    assert summary["skipped"] == len(kept) and summary["graded_now"] == 4 - len(kept)
    assert summary["statuses"]["graded"] == 4
    assert {r["score"] for r in read_grades(out).values()} == {"7"}
    with Gradebook(out / "gradebook.sqlite") as gb:
        before = [dict(r) for r in gb.db.execute("SELECT * FROM results ORDER BY student_id, test_id")]
    again = batch.grade(folder, subs, out, echo=lambda *a: None, progress=False)  # idempotent: nothing to do
    assert again["graded_now"] == 0 and again["skipped"] == 4
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
    assert {p.name for p in (out / "feedback").iterdir()} == {f"s{i}.html" for i in range(4)}
    assert json.loads((out / "summary.json").read_text())["statuses"]["graded"] == 4


# --- machinery failures are retried, and never the student's timeout -----------------------------
# the fixture's steps: 0 parameters, 1 imports, 2 total(), 3 export q1, 4 squares, 5 export q2, 6 answer, 7 export q3
SWALLOW_REPLIES = """
kernel = get_ipython().kernel
real_send = kernel.session.send
def send(stream, msg_or_type, *args, **kwargs):
    if msg_or_type == "execute_reply" and kernel.execution_count > 4:
        return None  # every later reply vanishes: exports, the final one, the tripwire
    return real_send(stream, msg_or_type, *args, **kwargs)
kernel.session.send = send
def total(x):
    return float(np.sum(x))
"""
FAULTS = {
    "kernel_start_fails": {0: {"kernel": "fail"}},
    "sandbox_fails": {0: {"sandbox": "fail"}, 1: {"sandbox": "fail"}},
    "cell_messages_lost": {0: {"drop": {"step": 4, "what": ["reply", "idle"]}}},
    "export_reply_lost": {0: {"drop": {"step": 3, "what": ["reply"]}}},
    "cell_reply_lost": {0: {"drop": {"step": 2, "what": ["reply"]}}},
    "client_crashes": {0: {"crash_client": True}},
    "always_fails": {a: {"kernel": "fail"} for a in range(batch.MAX_ATTEMPTS)},
}


@pytest.fixture(scope="module")
def machinery(tmp_path_factory):
    if sb.available() is not None:
        pytest.skip(f"no sandbox here: {sb.available()}")
    tmp = tmp_path_factory.mktemp("machinery")
    folder = make_assignment(tmp / "hw", cell_timeout=8)
    subs, out = tmp / "subs", tmp / "out"
    for student in [*FAULTS, "good"]:
        submit(subs, student, student_nb(folder))
    submit(subs, "infinite_loop", student_nb(folder, {"answer-6": "while True:\n    pass"}))
    submit(subs, "swallows_its_replies", student_nb(folder, {"answer-3": SWALLOW_REPLIES}))
    old = dict(batch.FAULTS)
    batch.FAULTS.clear()
    batch.FAULTS.update(FAULTS)
    try:
        summary = batch.grade(folder, subs, out, workers=2, echo=lambda *a: None, progress=False)
    finally:
        batch.FAULTS.clear()
        batch.FAULTS.update(old)
    timings = {t["student"]: t for t in summary["timings"]}
    return {"folder": folder, "subs": subs, "out": out, "summary": summary, "grades": read_grades(out),
            "timings": timings}


def _retried(machinery, student: str, attempts: int, words: str) -> None:
    row, timing = machinery["grades"][student], machinery["timings"][student]
    assert row["status"] == "graded" and row["score"] == "7", row
    assert timing["attempts"] == attempts, timing
    assert any(words in m for m in timing["machinery"]), timing["machinery"]
    assert "graded on attempt" in row["reason"] and "timeout" not in row["status"]


@pytest.mark.slow
def test_a_kernel_that_fails_to_start_is_retried(machinery):
    _retried(machinery, "kernel_start_fails", 2, "before the kernel was ready")


@pytest.mark.slow
def test_a_sandbox_that_fails_is_retried(machinery):
    _retried(machinery, "sandbox_fails", 3, "the sandbox exited with status")


@pytest.mark.slow
def test_lost_messages_are_noticed_within_seconds_and_retried(machinery):
    # a cell whose reply and idle are both lost, an export whose reply is lost: the client asked the
    # kernel directly, found it idle, and said so (not a timeout, whatever the cell timeout)
    _retried(machinery, "cell_messages_lost", 2, "the kernel finished cell 6 but its reply never reached the grader")
    _retried(machinery, "export_reply_lost", 2, "the kernel finished the export of q1 but its reply never reached")


@pytest.mark.slow
def test_a_lost_reply_of_a_finished_cell_is_recovered_without_a_retry(machinery):
    row, timing = machinery["grades"]["cell_reply_lost"], machinery["timings"]["cell_reply_lost"]
    assert (row["status"], row["score"], timing["attempts"]) == ("graded", "7", 1)
    assert timing["recovered_messages"] == 1


@pytest.mark.slow
def test_a_crash_of_the_notebook_client_is_retried(machinery):
    _retried(machinery, "client_crashes", 2, "the notebook client failed")


@pytest.mark.slow
def test_a_machinery_failure_that_persists_is_flagged_not_charged_and_retried_next_run(machinery):
    row = machinery["grades"]["always_fails"]
    assert row["status"] == "flagged" and row["status"] != "timeout", row
    assert f"could not run this notebook in {batch.MAX_ATTEMPTS} attempts" in row["reason"]
    assert machinery["summary"]["grader_failures"] == 2 and machinery["summary"]["retried"] >= 5
    # the next run (nothing forced, no fault any more) grades it again, and only it
    subs = machinery["subs"].parent / "subs-again"
    for student in ("always_fails", "good"):
        shutil.copytree(machinery["subs"] / student, subs / student)
    again = batch.grade(machinery["folder"], subs, machinery["out"], echo=lambda *a: None, progress=False)
    assert (again["graded_now"], again["skipped"]) == (1, 1)
    assert read_grades(machinery["out"])["always_fails"]["score"] == "7"


@pytest.mark.slow
def test_a_kernel_that_swallows_its_replies_is_flagged_after_the_retries_not_graded(machinery):
    """Tampering that looks like lost messages costs its author the retries and a person's review."""
    row = machinery["grades"]["swallows_its_replies"]
    assert row["status"] == "flagged" and row["score"] == "0", row
    assert "a fault of the grader, or tampering with it" in row["reason"]


@pytest.mark.slow
def test_a_students_own_infinite_loop_is_still_their_timeout(machinery):
    row, timing = machinery["grades"]["infinite_loop"], machinery["timings"]["infinite_loop"]
    assert row["status"] == "timeout" and row["score"] == "4", row
    assert "cell 6 ran past the 8 s per-cell limit" in row["reason"]
    assert timing["attempts"] == 1  # not mistaken for a stall, not retried
    assert machinery["grades"]["good"]["status"] == "graded"


def test_without_the_sandbox_the_same_client_grades_for_development(tmp_path):
    """``--unsafe-no-sandbox`` (no root, no isolation): the same notebook client runs a plain kernel."""
    folder = make_assignment(tmp_path / "hw")
    subs = tmp_path / "subs"
    submit(subs, "good", student_nb(folder))
    submit(subs, "partial", student_nb(folder, {"answer-6": "squares = data"}))
    summary = batch.grade(folder, subs, tmp_path / "out", sandbox=False, echo=lambda *a: None, progress=False)
    grades = read_grades(tmp_path / "out")
    assert summary["sandbox"] is False
    assert (grades["good"]["score"], grades["good"]["status"]) == ("7", "graded")
    assert (grades["partial"]["score"], grades["partial"]["status"]) == ("5", "graded")


def test_an_error_of_the_grader_on_one_submission_is_that_submissions_flagged_row(tmp_path, monkeypatch):
    """A bug of the grader's own, met on one submission, is recorded for that student; the others are graded."""
    folder = make_assignment(tmp_path / "hw")
    subs = tmp_path / "subs"
    submit(subs, "good", student_nb(folder))
    submit(subs, "boom", student_nb(folder))
    real = batch.prep_mod.prepare

    def prepare(path, *args, **kwargs):
        if path.name == "boom":
            raise KeyError("a grader bug met on this submission \udcff")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(batch.prep_mod, "prepare", prepare)
    summary = batch.grade(folder, subs, tmp_path / "out", sandbox=False, echo=lambda *a: None, progress=False)
    grades = read_grades(tmp_path / "out")
    assert grades["good"]["status"] == "graded" and grades["good"]["score"] == "7"
    assert grades["boom"]["status"] == "flagged" and "the grader failed on this submission (KeyError" in \
        grades["boom"]["reason"]
    assert summary["grader_failures"] == 1 and (tmp_path / "out" / "feedback" / "boom.html").exists()
