"""A course on one machine: its roster, and where everything of the assignment loop lives.

    COURSE/                     root, 0711: students may pass through, not list
      course.json               root, 0600: roster and the student-account prefix
      exchange/                 root, 0711
        released/               root, 0755: what `labkit assign` released; every student reads it
          <assignment>/assignment.json, files/...
        inbox/                  root, 0711: nobody lists who has an inbox
          <unix user>/          the student, 0700: only they (and root) see their submissions
      instructor/               root, 0700: nothing here is visible to students
        <assignment>/submissions/<student_id>/<notebook>.ipynb   (what `labkit grade` reads)
        <assignment>/archive/<student_id>/...   every submission ever collected
        <assignment>/collect.json, collect.csv, grades/, returned.json
      hub/                      root, 0700: JupyterHub's database, cookie secret, demo passwords

A student's hub name and Unix account is ``prefix + student_id`` (``lkstu-alice``); the
student id (``alice``) names their folder in ``submissions/`` and their grade row.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = "/srv/labkit"
DEFAULT_PREFIX = "lkstu-"
STUDENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,23}$")


class CourseError(RuntimeError):
    """The course folder or its roster is unusable: said with the fix."""


def default_root() -> Path:
    return Path(os.environ.get("LABKIT_COURSE", DEFAULT_ROOT))


def _mkdir(path: Path, mode: int) -> Path:
    """A root-owned folder with exactly ``mode``; a link or a foreign owner there is an error."""
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        raise CourseError(f"{path} should be a folder (found a link or a file)")
    if os.geteuid() == 0 and st.st_uid != 0:
        raise CourseError(f"{path} should belong to root (owner uid {st.st_uid}); remove it or fix its owner")
    os.chmod(path, mode)
    return path


@dataclass
class Course:
    root: Path
    students: list[str] = field(default_factory=list)
    prefix: str = DEFAULT_PREFIX

    # --- layout ------------------------------------------------------------------------------
    @property
    def exchange(self) -> Path:
        return self.root / "exchange"

    @property
    def released(self) -> Path:
        return self.exchange / "released"

    @property
    def inboxes(self) -> Path:
        return self.exchange / "inbox"

    @property
    def instructor(self) -> Path:
        return self.root / "instructor"

    @property
    def hub_state(self) -> Path:
        return self.root / "hub"

    def inbox(self, unix_name: str) -> Path:
        return self.inboxes / unix_name

    def work(self, assignment: str) -> Path:
        """The instructor's folder for one assignment (submissions, archive, grades)."""
        return self.instructor / assignment

    def submissions(self, assignment: str) -> Path:
        return self.work(assignment) / "submissions"

    def grades(self, assignment: str) -> Path:
        return self.work(assignment) / "grades"

    # --- names -------------------------------------------------------------------------------
    def unix_name(self, student_id: str) -> str:
        return student_id if student_id.startswith(self.prefix) else self.prefix + student_id

    def student_id(self, unix_name: str) -> str:
        return unix_name[len(self.prefix):] if unix_name.startswith(self.prefix) else unix_name

    @property
    def unix_names(self) -> list[str]:
        return [self.unix_name(s) for s in self.students]

    # --- on disk -----------------------------------------------------------------------------
    @classmethod
    def load(cls, root: str | Path | None = None) -> "Course":
        root = Path(root) if root else default_root()
        path = root / "course.json"
        if not path.exists():
            raise CourseError(f"no course at {root} (no course.json). Create one with "
                              f"'labkit hub init --course {root} --students alice bob' (as root).")
        data = json.loads(path.read_text())
        return cls(root=root, students=list(data.get("students", [])), prefix=data.get("prefix", DEFAULT_PREFIX))

    @classmethod
    def create(cls, root: str | Path | None = None, students: list[str] = (), prefix: str = DEFAULT_PREFIX) -> "Course":
        """Make (or complete) the course folders with their modes, and add ``students`` to the roster."""
        root = Path(root) if root else default_root()
        if not prefix or not re.fullmatch(r"[a-z][a-z0-9_-]*-", prefix):
            raise CourseError(f"the account prefix {prefix!r} must be lower-case letters/digits ending in '-' (e.g. 'lkstu-')")
        root.mkdir(parents=True, exist_ok=True)
        try:
            course = cls.load(root)
            if course.prefix != prefix:
                raise CourseError(f"{root} already uses the prefix {course.prefix!r}, not {prefix!r}")
        except CourseError as exc:
            if "no course" not in str(exc):
                raise
            course = cls(root=root, prefix=prefix)
        course.add_students(students)
        course.ensure_layout()
        return course

    def add_students(self, students) -> None:
        for s in students:
            s = self.student_id(s.strip().lower())
            if not STUDENT_ID.match(s):
                raise CourseError(f"student id {s!r}: use 1-24 lower-case letters, digits or '_', starting with a letter")
            if s not in self.students:
                self.students.append(s)

    def ensure_layout(self) -> None:
        _mkdir(self.root, 0o711)
        _mkdir(self.exchange, 0o711)
        _mkdir(self.released, 0o755)
        _mkdir(self.inboxes, 0o711)
        _mkdir(self.instructor, 0o700)
        _mkdir(self.hub_state, 0o700)
        self.save()

    def save(self) -> None:
        path = self.root / "course.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"students": self.students, "prefix": self.prefix}, fh, indent=2)
        os.replace(tmp, path)
