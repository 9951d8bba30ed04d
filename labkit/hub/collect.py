"""``labkit collect``: gather every student's submissions of an assignment for grading.

For each student on the roster it reads their inbox safely (:func:`labkit.hub.exchange.read_inbox`),
adds each new submission to the instructor's archive (nothing collected is ever dropped, even if
the student later deletes it from their inbox), and puts the **last** one (by the time the kernel
recorded) where ``labkit grade`` reads it:

    instructor/<name>/submissions/<student_id>/<notebook>.ipynb
    instructor/<name>/archive/<student_id>/<UTC time>-<sha256 prefix>.ipynb  (+ index.json)
    instructor/<name>/collect.json, collect.csv   one row per student on the roster

Statuses: ``on_time``, ``late`` (the counted submission arrived after the deadline; it is still
collected and graded, and the instructor decides), ``missing`` (nothing submitted, or no account
yet). Files that are links, not the student's, hard-linked, too large or changing while read are
rejected and listed in ``notes``.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from labkit.hub import accounts, exchange
from labkit.hub.course import Course

COLUMNS = ["student_id", "status", "submitted_at", "sha256", "submissions", "late_by_seconds", "notes"]


@dataclass
class Row:
    student_id: str
    status: str
    submitted_at: str | None = None
    sha256: str | None = None
    submissions: int = 0
    late_by_seconds: float | None = None
    notes: list[str] = field(default_factory=list)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _archive(folder: Path, found: list[exchange.Found]) -> list[dict]:
    """Merge ``found`` into the student's archive index; return every entry, oldest first."""
    index_path = folder / "index.json"
    entries = json.loads(index_path.read_text()) if index_path.exists() else []
    known = {(e["sha256"], e["recorded_at"]) for e in entries}
    for f in found:
        key = (f.sha256, _iso(f.ctime))
        if key in known:
            continue
        stamp = datetime.fromtimestamp(f.ctime, timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{f.sha256[:12]}.ipynb"
        _write_atomic(folder / name, f.data)
        entries.append({"file": name, "sha256": f.sha256, "recorded_at": key[1], "ctime": f.ctime,
                        "inbox_name": f.name, "bytes": len(f.data)})
        known.add(key)
    entries.sort(key=lambda e: e["ctime"])
    if found or index_path.exists():
        _write_atomic(index_path, json.dumps(entries, indent=2).encode())
    return entries


def collect(course: Course, assignment: str, deadline: datetime | None = None, use_release_deadline: bool = True) -> dict:
    """Collect ``assignment`` from every student on the roster; return the report (also on disk)."""
    released = course.released / assignment / "assignment.json"
    if not released.exists():
        raise FileNotFoundError(f"{assignment!r} was never released to this course (no {released}); "
                                f"run 'labkit assign assignments/{assignment}' first")
    info = json.loads(released.read_text())
    if deadline is None and use_release_deadline and info.get("deadline"):
        deadline = datetime.fromisoformat(info["deadline"])
    notebook = info["notebook"]
    work = course.work(assignment)
    rows = []
    for student in course.students:
        unix = course.unix_name(student)
        row = Row(student, "missing")
        if accounts.lookup(unix) is None:
            row.notes.append("no account yet (never logged in to the hub)")
            rows.append(row)
            continue
        found, rejected = exchange.read_inbox(course.inboxes, unix, assignment)
        row.notes += [f"rejected {r}" for r in rejected]
        entries = _archive(work / "archive" / student, found)
        row.submissions = len(entries)
        target = work / "submissions" / student / notebook
        if not entries:
            rows.append(row)
            continue
        last = entries[-1]
        data = (work / "archive" / student / last["file"]).read_bytes()
        if not target.exists() or target.read_bytes() != data:
            _write_atomic(target, data)
        row.submitted_at, row.sha256 = last["recorded_at"], last["sha256"]
        row.status = "on_time"
        if deadline is not None and last["ctime"] > deadline.timestamp():
            row.status = "late"
            row.late_by_seconds = round(last["ctime"] - deadline.timestamp(), 1)
        if len(entries) > 1:
            row.notes.append(f"{len(entries)} submissions kept; the last one counts")
        rows.append(row)
    report = {"assignment": assignment, "deadline": deadline.isoformat() if deadline else None,
              "collected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "submissions": str(work / "submissions"), "notebook": notebook,
              "counts": {s: sum(r.status == s for r in rows) for s in ("on_time", "late", "missing")},
              "students": [asdict(r) for r in rows]}
    _write_atomic(work / "collect.json", json.dumps(report, indent=2).encode())
    with open(work / ".collect.csv.tmp", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({**asdict(r), "notes": "; ".join(r.notes)})
    os.replace(work / ".collect.csv.tmp", work / "collect.csv")
    return report
