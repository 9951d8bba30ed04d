"""``labkit assign``: release an assignment to every student of the course.

It runs ``labkit release`` (:func:`labkit.grading.release.release`: no solutions, no hidden tests)
into the exchange's ``released/<name>/``, which every student can read and none can change:

    released/<name>/assignment.json   {assignment, notebook, deadline, released_at, max_score, questions}
    released/<name>/files/...         what ``labkit fetch`` copies into ``~/assignments/<name>/``

and makes sure each student on the roster who already has an account has an inbox. Students who
log in later get theirs when their server starts. Re-releasing replaces the released files (a
student's fetched copy is never touched).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from labkit.hub import accounts, exchange
from labkit.hub.course import Course


def parse_deadline(text: str | None) -> datetime | None:
    """An ISO date-time (``2026-12-01T23:59``, with or without a UTC offset; without one it is
    this machine's local time) as an aware datetime; None for no deadline."""
    if not text:
        return None
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.astimezone()


def _publish(tree: Path, mode_dirs: int = 0o755, mode_files: int = 0o644) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        os.chmod(dirpath, mode_dirs)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), mode_files)


def assign(course: Course, assignment_dir: str | Path, deadline: datetime | None = None) -> dict:
    """Release ``assignment_dir`` to the course; return the public manifest."""
    from labkit.grading.release import release

    assignment_dir = Path(assignment_dir)
    with tempfile.TemporaryDirectory(prefix="labkit-assign-") as tmp:
        manifest = release(assignment_dir, out=tmp)
        name = manifest["assignment"]
        built = Path(tmp) / name
        (built / "release.json").unlink()  # the grader's manifest; students get the public one below
        stage = course.released / f".{name}.new"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        shutil.copytree(built, stage / "files")
    public = {
        "assignment": name,
        "notebook": Path(manifest["notebook"]).name,
        "deadline": deadline.isoformat() if deadline else None,
        "released_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "max_score": manifest["max_score"],
        "questions": manifest["questions"],
    }
    (stage / "assignment.json").write_text(json.dumps(public, indent=2) + "\n")
    _publish(stage)
    target = course.released / name
    old = course.released / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.rename(target, old)
    os.rename(stage, target)
    shutil.rmtree(old, ignore_errors=True)
    inboxes = []
    for unix in course.unix_names:
        if accounts.lookup(unix):
            exchange.ensure_inbox(course.inboxes, unix)
            inboxes.append(unix)
    course.work(name).mkdir(parents=True, exist_ok=True)
    return {**public, "released_to": str(target), "inboxes": inboxes, "students": len(course.students)}
