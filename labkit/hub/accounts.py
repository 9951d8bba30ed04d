"""Students' Unix accounts: one real account per student, so the operating system keeps them apart.

Each account has a private home (mode 0700), its own group, no password (the hub authenticates),
and belongs to the ``labkit-students`` group. Only names that start with the course's prefix are
ever created or removed here, so the lab's other users (``labkit-sandbox*``, people) are never
touched.

Also a command for JupyterHub's ``LocalAuthenticator.add_user_cmd`` (it appends the name)::

    python -m labkit.hub.accounts create            lkstu-alice
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import signal
import subprocess
import sys
import time

import psutil

STUDENTS_GROUP = "labkit-students"
NAME = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")


class AccountError(RuntimeError):
    pass


def _check(name: str, prefix: str) -> None:
    if not prefix or not name.startswith(prefix) or not NAME.match(name):
        raise AccountError(f"refusing to manage the account {name!r}: student accounts start with {prefix!r}")


def lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _ensure_group() -> None:
    try:
        grp.getgrnam(STUDENTS_GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--force", STUDENTS_GROUP], check=True, capture_output=True)


def create(name: str, prefix: str) -> pwd.struct_passwd:
    """Create the student's account (idempotent) with a private home; return its passwd entry."""
    _check(name, prefix)
    entry = lookup(name)
    if entry is None:
        _ensure_group()
        proc = subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group",
                               "--groups", STUDENTS_GROUP, "--comment", "labkit student", name],
                              capture_output=True, text=True)
        if proc.returncode not in (0, 9):  # 9: it appeared meanwhile
            raise AccountError(f"useradd {name} failed: {proc.stderr.strip()}")
        entry = pwd.getpwnam(name)
    home = entry.pw_dir
    st = os.lstat(home)
    if st.st_uid == entry.pw_uid and not os.path.islink(home):
        os.chmod(home, 0o700)  # Debian's useradd leaves homes 0755: classmates could read everything
    return entry


def processes(uid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["uids"]):
        try:
            if p.info["uids"] and p.info["uids"].real == uid:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stop_processes(uid: int, grace: float = 5.0) -> int:
    """End every process of ``uid`` (their server, kernels, terminals): TERM, then KILL."""
    procs = processes(uid)
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return len(procs)


def remove(name: str, prefix: str) -> bool:
    """Delete a student account, its processes and its home. True if there was one."""
    _check(name, prefix)
    entry = lookup(name)
    if entry is None:
        return False
    for _ in range(3):
        stop_processes(entry.pw_uid)
        proc = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
        if proc.returncode in (0, 12):  # 12: the home could not be removed (already gone)
            return True
        time.sleep(0.5)  # a process was still exiting ("user is currently used by process")
    raise AccountError(f"userdel {name} failed: {proc.stderr.strip()}")


def run_as(name: str, argv: list[str], input: bytes | None = None, env: dict | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``argv`` as the student (their uid and group only, in their home)."""
    entry = pwd.getpwnam(name)
    env = env if env is not None else {"HOME": entry.pw_dir, "USER": name, "LOGNAME": name,
                                       "PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    return subprocess.run(argv, input=input, capture_output=True, env=env, cwd=entry.pw_dir, timeout=timeout,
                          user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])


def main(argv: list[str]) -> int:
    """``python -m labkit.hub.accounts create NAME`` (JupyterHub's add_user_cmd)."""
    from labkit.hub.course import DEFAULT_PREFIX

    if len(argv) != 2 or argv[0] != "create":
        print("usage: python -m labkit.hub.accounts create NAME", file=sys.stderr)
        return 2
    prefix = os.environ.get("LABKIT_STUDENT_PREFIX", DEFAULT_PREFIX)
    try:
        entry = create(argv[1], prefix)
    except AccountError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"account {entry.pw_name} (uid {entry.pw_uid}), home {entry.pw_dir} (0700)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
