"""DEMO ONLY: the authenticator ``make hub`` uses, so that a course hub can be tried in a minute.

Each student on the roster has a random password, kept in plain text in
``COURSE/hub/demo-passwords.json`` (root only) and printed when the hub starts. There is no
password change, no rate limiting and no lock-out. A real course uses PAM (the students' Unix
passwords), OAuth through the university's identity provider, or LTI from the LMS: see
deploy/README.md.

What it does like a real one: a student logs in as ``alice`` and is the hub user (and Unix
account) ``lkstu-alice``, which the hub creates on first login (``create_system_users``).
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from jupyterhub.auth import LocalAuthenticator
from traitlets import Unicode, default

from labkit.hub import accounts

DEMO_BANNER = ("DEMO ONLY: this hub uses labkit's demo authenticator (passwords in a plain file). "
               "Do not use it for a real course.")


def make_passwords(path: str | Path, students: list[str]) -> dict[str, str]:
    """Give every student without one a random password; keep the others. Returns them all."""
    path = Path(path)
    known = json.loads(path.read_text()) if path.exists() else {}
    for s in students:
        known.setdefault(s, secrets.token_urlsafe(9))
    path.write_text(json.dumps(known, indent=2))
    path.chmod(0o600)
    return known


class DemoAuthenticator(LocalAuthenticator):
    """DEMO ONLY: per-student random passwords from a file; creates each student's Unix account."""

    passwords_file = Unicode(help="JSON {student_id: password}, readable by root only").tag(config=True)
    student_prefix = Unicode("lkstu-", help="Hub users and Unix accounts are prefix + student id").tag(config=True)

    @default("create_system_users")
    def _create_default(self):
        return True

    def normalize_username(self, username):
        name = super().normalize_username(username.strip())
        return name if name.startswith(self.student_prefix) else self.student_prefix + name

    def check_allow_config(self):
        super().check_allow_config()
        self.log.warning(DEMO_BANNER)

    async def authenticate(self, handler, data):
        name = self.normalize_username(data.get("username", ""))
        student = name[len(self.student_prefix):]
        try:
            passwords = json.loads(Path(self.passwords_file).read_text())
        except (OSError, ValueError):
            self.log.error("demo passwords file %s is unreadable", self.passwords_file)
            return None
        expected = passwords.get(student)
        if expected and secrets.compare_digest(str(data.get("password", "")).encode(), expected.encode()):
            return name
        return None

    def add_system_user(self, user):
        accounts.create(user.name, self.student_prefix)
