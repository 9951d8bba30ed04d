"""The assignment loop with real Unix accounts: assign, fetch, submit, collect, return.

Students' commands really run as the students (``setpriv``, in the hub's view of the machine);
the instructor's run as root. Failure cases: two submissions (the last counts, both kept), a late
one, a missing student, and hostile inboxes (links, hard links, FIFOs, back-dated files).
"""
import json
import os
import pwd
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hubkit import PREFIX, PY, ROOT, needs_root, remove_students
from labkit.hub import distribute, reach
from labkit.hub.accounts import AccountError, create, remove
from labkit.hub.assign import assign
from labkit.hub.collect import collect
from labkit.hub.course import Course
from labkit.hub.handback import return_feedback

ASSIGNMENT = ROOT / "assignments" / "tf_basics"
CORRECT = ASSIGNMENT / "samples" / "correct" / "tf_basics.ipynb"
STUDENTS = ["ada", "ben", "cy"]  # cy never logs in


@pytest.fixture(scope="module")
def course():
    if os.geteuid() != 0:
        pytest.skip("real student accounts need root (CI runs as root)")
    root = Path(f"/tmp/labkit-hubloop-{os.getpid()}")
    remove_students(root, STUDENTS)
    c = Course.create(root, STUDENTS)
    for s in ("ada", "ben"):
        create(c.unix_name(s), c.prefix)
    yield c
    remove_students(root, STUDENTS)
    shutil.rmtree(root, ignore_errors=True)
    assert not [s for s in STUDENTS if _pw(PREFIX + s)], "student accounts left behind"


def _pw(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def as_student(course, student, *argv, check=True, stdin=None):
    """Run ``argv`` as the student, with the environment the hub gives their terminal."""
    unix = course.unix_name(student)
    home = pwd.getpwnam(unix).pw_dir
    env = {"HOME": home, "USER": unix, "PATH": f"{Path(PY).parent}:/usr/bin:/bin", "LC_ALL": "C.UTF-8",
           "LABKIT_EXCHANGE": str(course.exchange)}
    proc = subprocess.run(reach.as_student(unix, list(argv), ROOT, course.root), env=env, cwd=home,
                          capture_output=True, text=True, timeout=120, input=stdin)
    if check:
        assert proc.returncode == 0, f"{argv} as {student} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def labkit(course, student, *args, **kw):
    return as_student(course, student, PY, "-m", "labkit", *args, **kw)


def home(course, student) -> Path:
    return Path(pwd.getpwnam(course.unix_name(student)).pw_dir)


@needs_root
def test_the_whole_loop_with_two_submissions_and_a_missing_student(course, tmp_path):
    deadline = datetime.now(timezone.utc) + timedelta(hours=1)
    out = assign(course, ASSIGNMENT, deadline=deadline)
    assert out["assignment"] == "tf_basics" and set(out["inboxes"]) == {"lkstu-ada", "lkstu-ben"}
    released = course.released / "tf_basics" / "files" / "tf_basics.ipynb"
    assert "### BEGIN SOLUTION" not in released.read_text() and "HIDDEN TEST" not in released.read_text()
    assert oct(os.stat(course.inbox("lkstu-ada")).st_mode & 0o777) == "0o700"

    # the student fetches: the notebook lands in their home, owned by them; a second fetch keeps their edits
    got = json.loads(labkit(course, "ada", "fetch", "tf_basics", "--json").stdout)
    mine = home(course, "ada") / "assignments" / "tf_basics" / "tf_basics.ipynb"
    assert got[0]["status"] == "fetched" and mine.exists()
    assert mine.stat().st_uid == pwd.getpwnam("lkstu-ada").pw_uid
    mine.write_text(mine.read_text().replace("Three short questions", "my own work in progress"))
    again = json.loads(labkit(course, "ada", "fetch", "tf_basics", "--json").stdout)
    assert again[0]["status"].startswith("kept") and "my own work in progress" in mine.read_text()

    # two submissions: the fetched draft, then a finished notebook; the receipt has a time and a hash
    first = json.loads(labkit(course, "ada", "submit", "tf_basics", "--json").stdout)
    final = home(course, "ada") / "final.ipynb"
    shutil.copy(CORRECT, final)
    os.chown(final, pwd.getpwnam("lkstu-ada").pw_uid, pwd.getpwnam("lkstu-ada").pw_gid)
    second = json.loads(labkit(course, "ada", "submit", "tf_basics", str(final), "--json").stdout)
    assert first["number"] == 1 and second["number"] == 2 and not second["late"]
    assert len(second["sha256"]) == 64 and second["sha256"] != first["sha256"]
    receipt = labkit(course, "ada", "submit", "tf_basics", "--list").stdout
    assert receipt.count(".ipynb") == 2

    report = collect(course, "tf_basics")
    rows = {r["student_id"]: r for r in report["students"]}
    assert rows["ada"]["status"] == "on_time" and rows["ada"]["submissions"] == 2
    assert rows["ada"]["sha256"] == second["sha256"], "the last submission counts"
    assert (course.submissions("tf_basics") / "ada" / "tf_basics.ipynb").read_bytes() == CORRECT.read_bytes()
    archive = sorted((course.work("tf_basics") / "archive" / "ada").glob("*.ipynb"))
    assert len(archive) == 2, "both submissions are kept"
    assert rows["ben"]["status"] == "missing" and rows["cy"]["status"] == "missing"
    assert "never logged in" in rows["cy"]["notes"][0]
    assert not (course.submissions("tf_basics") / "ben").exists()
    assert report["counts"] == {"on_time": 1, "late": 0, "missing": 2}
    csv_text = (course.work("tf_basics") / "collect.csv").read_text()
    assert csv_text.splitlines()[0].startswith("student_id,status,submitted_at,sha256")
    # collecting again (from the command line, as an instructor does) adds nothing twice
    again = subprocess.run([PY, "-m", "labkit", "collect", "tf_basics", "--course", str(course.root), "--json"],
                           capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["students"][0]["submissions"] == 2
    assert len(list((course.work("tf_basics") / "archive" / "ada").glob("*.ipynb"))) == 2

    # the instructor returns feedback pages (here written by hand; the browser test grades for real)
    feedback = tmp_path / "feedback"
    feedback.mkdir()
    (feedback / "ada.html").write_text("<html><body><h1>tf_basics: feedback for ada</h1></body></html>")
    proc = subprocess.run([PY, "-m", "labkit", "return", "tf_basics", "--course", str(course.root), "--feedback",
                           str(feedback), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    returned = {r["student_id"]: r for r in json.loads(proc.stdout)["students"]}
    assert returned["ada"]["status"] == "returned" and returned["ben"]["status"].startswith("no feedback")
    page = home(course, "ada") / "feedback" / "tf_basics.html"
    st = page.stat()
    assert st.st_uid == pwd.getpwnam("lkstu-ada").pw_uid and oct(st.st_mode & 0o777) == "0o600"
    assert second["sha256"] in page.read_text() and "on time" in page.read_text()

    # ben can read none of it, and cannot write into ada's inbox
    for target in (page, course.inbox("lkstu-ada"), mine, course.submissions("tf_basics")):
        denied = as_student(course, "ben", "/bin/ls", "-la", str(target), check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, (target, denied.stdout)
    forged = as_student(course, "ben", "/bin/sh", "-c", f"echo x > {course.inbox('lkstu-ada')}/tf_basics/forged.ipynb",
                        check=False)
    assert forged.returncode != 0 and "Permission denied" in forged.stderr
    sneaky = as_student(course, "ben", "/bin/sh", "-c", f"mkdir {course.inboxes}/lkstu-cy", check=False)
    assert sneaky.returncode != 0, "a student must not create a classmate's inbox"


@needs_root
def test_a_submission_after_the_deadline_is_flagged_late(course):
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    assign(course, ASSIGNMENT, deadline=past)
    labkit(course, "ben", "fetch", "tf_basics")
    receipt = labkit(course, "ben", "submit", "tf_basics")
    assert "LATE" in receipt.stdout
    # the student back-dates the file: collect uses the kernel's ctime, not mtime or the name
    folder = course.inbox("lkstu-ben") / "tf_basics"
    as_student(course, "ben", "/bin/sh", "-c", f"touch -d 2000-01-01 {folder}/*.ipynb")
    report = collect(course, "tf_basics")
    row = next(r for r in report["students"] if r["student_id"] == "ben")
    assert row["status"] == "late" and row["late_by_seconds"] >= 299
    # an instructor's extension (--deadline) turns it back into on time
    later = datetime.now(timezone.utc) + timedelta(minutes=1)
    row = next(r for r in collect(course, "tf_basics", deadline=later)["students"] if r["student_id"] == "ben")
    assert row["status"] == "on_time"
    assign(course, ASSIGNMENT, deadline=datetime.now(timezone.utc) + timedelta(hours=1))  # for the next tests


@needs_root
def test_hostile_inbox_contents_are_rejected_not_followed(course):
    """Links to files the student can't read, hard links, FIFOs and a link in place of the
    assignment folder: collect (root) reads none of them."""
    folder = course.inbox("lkstu-ben") / "tf_basics"
    secret = home(course, "ada") / "assignments" / "tf_basics" / "tf_basics.ipynb"
    before = collect(course, "tf_basics")
    ben_before = next(r for r in before["students"] if r["student_id"] == "ben")["submissions"]
    as_student(course, "ben", "/bin/sh", "-c",
               f"cd {folder} && ln -s {secret} 20990101T000000.000000Z-aaaaaaaaaaaa.ipynb && "
               f"ln -s /etc/shadow shadow.ipynb && mkfifo fifo.ipynb && "
               f"(ln /etc/passwd hard.ipynb 2>/dev/null || true)")
    report = collect(course, "tf_basics")
    row = next(r for r in report["students"] if r["student_id"] == "ben")
    notes = " ".join(row["notes"])
    assert "20990101T000000.000000Z-aaaaaaaaaaaa.ipynb: not opened (a link)" in notes
    assert "shadow.ipynb: not opened (a link)" in notes and "fifo.ipynb: not a regular file" in notes
    assert row["submissions"] == ben_before, "nothing new may be archived from links"
    archived = b"".join(p.read_bytes() for p in (course.work("tf_basics") / "archive" / "ben").glob("*.ipynb"))
    assert b"root:" not in archived and secret.read_bytes() not in archived
    # the whole assignment folder replaced by a link to ada's inbox
    as_student(course, "ben", "/bin/sh", "-c", f"rm -rf {folder} && ln -s {course.inbox('lkstu-ada')}/tf_basics {folder}")
    row = next(r for r in collect(course, "tf_basics")["students"] if r["student_id"] == "ben")
    assert any("tf_basics/ was rejected" in n for n in row["notes"])
    assert row["submissions"] == ben_before, "collected submissions stay archived"
    as_student(course, "ben", "/bin/sh", "-c", f"rm -f {folder}")


@needs_root
def test_feedback_delivery_does_not_follow_a_students_link(course, tmp_path):
    """ben makes ~/feedback/tf_basics.html a link to a root-owned file: the delivery, running as
    ben, replaces the link and never writes through it."""
    target = tmp_path / "root-owned.txt"
    target.write_text("untouched")
    as_student(course, "ben", "/bin/sh", "-c", f"mkdir -p ~/feedback && ln -sf {target} ~/feedback/tf_basics.html")
    feedback = tmp_path / "fb"
    feedback.mkdir()
    (feedback / "ben.html").write_text("<html><body>ben's feedback</body></html>")
    returned = {r["student_id"]: r for r in return_feedback(course, "tf_basics", feedback)["students"]}
    assert returned["ben"]["status"] == "returned"
    page = home(course, "ben") / "feedback" / "tf_basics.html"
    assert not page.is_symlink() and "ben's feedback" in page.read_text()
    assert target.read_text() == "untouched"


def test_notebook_sync_never_overwrites_a_students_edits(tmp_path):
    src, home_lab = tmp_path / "notebooks", tmp_path / "home" / "lab"
    src.mkdir()
    for name in ("a.ipynb", "b.ipynb", "c.ipynb"):
        (src / name).write_text(f"{name} v1")
    assert set(distribute.sync(src, home_lab).values()) == {"copied"}
    (home_lab / "a.ipynb").write_text("a.ipynb with the student's answers")
    (home_lab / "c.ipynb").unlink()
    for name in ("a.ipynb", "b.ipynb"):
        (src / name).write_text(f"{name} v2")
    (src / "d.ipynb").write_text("a new lab")
    done = distribute.sync(src, home_lab)
    assert done["a.ipynb"] == "kept (you changed it)"
    assert (home_lab / "a.ipynb").read_text() == "a.ipynb with the student's answers"
    assert done["b.ipynb"].startswith("updated") and (home_lab / "b.ipynb").read_text() == "b.ipynb v2"
    assert done["c.ipynb"] == "copied" and done["d.ipynb"] == "copied"
    assert distribute.sync(src, home_lab)["a.ipynb"] == "kept (you changed it)"


def test_accounts_outside_the_student_prefix_are_never_touched():
    for name in ("root", "labkit-sandbox0", "lkstu", "lkstualice", "nobody"):
        with pytest.raises(AccountError):
            create(name, PREFIX)
        with pytest.raises(AccountError):
            remove(name, PREFIX)
    with pytest.raises(AccountError):
        create("lkstu-x", "")


def test_student_commands_explain_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("LABKIT_EXCHANGE", raising=False)
    proc = subprocess.run([PY, "-m", "labkit", "submit", "tf_basics"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "LABKIT_EXCHANGE is not set" in proc.stderr
    (tmp_path / "released").mkdir()
    proc = subprocess.run([PY, "-m", "labkit", "fetch", "nope"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "LABKIT_EXCHANGE": str(tmp_path)})
    assert proc.returncode == 2 and "no released assignment called 'nope'" in proc.stderr
