"""The gradebook: SQLite in WAL mode, one row per submission x test.

- ``submissions``: one row per (assignment, student): status, reason, the digests of the
  submission and of the tests that produced it, when and how long.
- ``results``: one row per (assignment, student, test): passed, points, max_points, message.
- ``overrides``: manual scores a person set for (assignment, student, test); they live in their
  own table, so re-grading never touches them, and every score read applies them.

Each submission is written in one transaction after it is graded, so a grader killed with
``kill -9`` loses at most the submissions it was working on; the next run skips everything whose
submission and test digests are unchanged (idempotent) and grades the rest.
"""
from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

from labkit.grading.untrusted import clean_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
  assignment TEXT NOT NULL, student_id TEXT NOT NULL,
  submission_digest TEXT NOT NULL, tests_digest TEXT NOT NULL,
  status TEXT NOT NULL, reason TEXT NOT NULL, max_score REAL NOT NULL,
  graded_at TEXT NOT NULL, seconds REAL NOT NULL,
  PRIMARY KEY (assignment, student_id));
CREATE TABLE IF NOT EXISTS results (
  assignment TEXT NOT NULL, student_id TEXT NOT NULL, test_id TEXT NOT NULL,
  question TEXT NOT NULL, hidden INTEGER NOT NULL, passed INTEGER NOT NULL,
  points REAL NOT NULL, max_points REAL NOT NULL, message TEXT NOT NULL,
  PRIMARY KEY (assignment, student_id, test_id));
CREATE TABLE IF NOT EXISTS overrides (
  assignment TEXT NOT NULL, student_id TEXT NOT NULL, test_id TEXT NOT NULL,
  points REAL NOT NULL, note TEXT NOT NULL DEFAULT '', set_at TEXT NOT NULL,
  PRIMARY KEY (assignment, student_id, test_id));
"""


class Gradebook:
    """A small, explicit API over the SQLite file (one writer: the grader's main thread)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"could not put {self.path} in WAL mode (got {mode})")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        try:
            self.path.chmod(0o600)
        except OSError:
            pass

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- reading ---------------------------------------------------------------------------
    def is_current(self, assignment: str, student: str, submission_digest: str, tests_digest: str) -> bool:
        row = self.db.execute("SELECT submission_digest, tests_digest FROM submissions "
                              "WHERE assignment=? AND student_id=?", (assignment, student)).fetchone()
        return bool(row) and tuple(row) == (submission_digest, tests_digest)

    def results(self, assignment: str, student: str) -> list[dict]:
        """Test rows with overrides applied (``overridden`` says which)."""
        rows = self.db.execute(
            "SELECT r.*, o.points AS override, o.note AS override_note FROM results r "
            "LEFT JOIN overrides o USING (assignment, student_id, test_id) "
            "WHERE r.assignment=? AND r.student_id=? ORDER BY r.rowid", (assignment, student)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["passed"], d["hidden"] = bool(d["passed"]), bool(d["hidden"])
            d["overridden"] = d.pop("override") is not None
            if d["overridden"]:
                d["points"] = r["override"]
            out.append(d)
        return out

    def submission(self, assignment: str, student: str) -> dict | None:
        row = self.db.execute("SELECT * FROM submissions WHERE assignment=? AND student_id=?",
                              (assignment, student)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["score"] = round(sum(r["points"] for r in self.results(assignment, student)), 4)
        return d

    def students(self, assignment: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT student_id FROM submissions WHERE assignment=? ORDER BY student_id", (assignment,))]

    def table(self, assignment: str) -> list[dict]:
        """One dict per graded student: student_id, score, max_score, status, reason."""
        return [self.submission(assignment, s) for s in self.students(assignment)]

    # --- writing ---------------------------------------------------------------------------
    def record(self, assignment: str, student: str, submission_digest: str, tests_digest: str,
               status: str, reason: str, max_score: float, seconds: float, results: list[dict]) -> None:
        """Replace this submission's rows in one transaction (overrides are left alone).

        Text is made valid Unicode first (lone surrogates from a student's folder name or output
        would make SQLite refuse the row); a non-finite number becomes 0."""
        student, status, reason = clean_text(student), clean_text(status), clean_text(reason)
        num = lambda x: float(x) if math.isfinite(float(x)) else 0.0  # noqa: E731
        with self._transaction():
            self.db.execute("DELETE FROM results WHERE assignment=? AND student_id=?", (assignment, student))
            self.db.executemany(
                "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?)",
                [(assignment, student, clean_text(str(r["test_id"])), clean_text(str(r["question"])),
                  int(bool(r["hidden"])), int(bool(r["passed"])), num(r["points"]), num(r["max_points"]),
                  clean_text(str(r["message"]))) for r in results])
            self.db.execute(
                "INSERT OR REPLACE INTO submissions VALUES (?,?,?,?,?,?,?,?,?)",
                (assignment, student, submission_digest, tests_digest, status, reason, num(max_score),
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), num(seconds)))

    def set_override(self, assignment: str, student: str, test_id: str, points: float, note: str = "") -> None:
        """A person's score for one test; it survives every re-grade until cleared."""
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO overrides VALUES (?,?,?,?,?,?)",
                            (assignment, student, test_id, float(points), note,
                             time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))

    def clear_override(self, assignment: str, student: str, test_id: str) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM overrides WHERE assignment=? AND student_id=? AND test_id=?",
                            (assignment, student, test_id))

    def _transaction(self):
        db = self.db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, *_):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
        return _Tx()
