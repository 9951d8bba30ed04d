"""``labkit return``: hand each student their feedback page, in their home, readable only by them.

``labkit grade`` writes ``grades/feedback/<student_id>.html``. This puts it at
``~/feedback/<assignment>.html`` (mode 0600 in a 0700 folder), written by a process running as
that student (:func:`labkit.hub.exchange.deliver`), with a short header saying which submission
was graded: its time, SHA-256 and whether it was late (from ``collect.json``).
"""
from __future__ import annotations

import html
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from labkit.hub import accounts, exchange
from labkit.hub.course import Course

FOLDER = "feedback"


def _header(assignment: str, row: dict | None) -> str:
    if not row or not row.get("submitted_at"):
        return ""
    late = row.get("status") == "late"
    style = ("margin:0 0 1em;padding:.6em 1em;border-radius:4px;font:14px sans-serif;"
             + ("background:#fde2e1;border:1px solid #d93025" if late else "background:#e6f4ea;border:1px solid #188038"))
    status = (f"LATE by {row['late_by_seconds']:.0f} s" if late else "on time")
    return (f'<div class="labkit-receipt" style="{style}">{html.escape(assignment)}: graded the submission recorded at '
            f"{html.escape(row['submitted_at'])} ({status}); sha256 <code>{html.escape(row['sha256'] or '')}</code>; "
            f"{row.get('submissions', 1)} submission(s) kept.</div>")


def with_header(page: str, header: str) -> str:
    if not header:
        return page
    m = re.search(r"<body[^>]*>", page, flags=re.IGNORECASE)
    return page[: m.end()] + header + page[m.end():] if m else header + page


def return_feedback(course: Course, assignment: str, feedback_dir: str | Path | None = None) -> dict:
    """Deliver every feedback page found for the roster; return what happened to each student."""
    feedback_dir = Path(feedback_dir) if feedback_dir else course.grades(assignment) / "feedback"
    if not feedback_dir.is_dir():
        raise FileNotFoundError(f"no feedback pages in {feedback_dir}: grade first "
                                f"('labkit grade assignments/{assignment} {course.submissions(assignment)} "
                                f"--out {course.grades(assignment)}')")
    collected_path = course.work(assignment) / "collect.json"
    collected = {}
    if collected_path.exists():
        collected = {r["student_id"]: r for r in json.loads(collected_path.read_text())["students"]}
    results = []
    for student in course.students:
        unix = course.unix_name(student)
        page = feedback_dir / f"{student}.html"
        entry = {"student_id": student, "status": "returned", "path": None}
        if not page.is_file():
            entry["status"] = "no feedback (not submitted or not graded)"
        elif accounts.lookup(unix) is None:
            entry["status"] = "no account"
        else:
            text = with_header(page.read_text(encoding="utf-8"), _header(assignment, collected.get(student)))
            try:
                entry["path"] = exchange.deliver(unix, FOLDER, f"{assignment}.html", text.encode("utf-8"))
            except exchange.ExchangeError as exc:
                entry["status"] = f"failed: {exc}"
        results.append(entry)
    report = {"assignment": assignment, "returned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "feedback": str(feedback_dir), "students": results}
    out = course.work(assignment) / "returned.json"
    out.write_text(json.dumps(report, indent=2))
    os.chmod(out, 0o600)
    return report
