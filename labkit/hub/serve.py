"""``labkit hub serve`` (``make hub``): start the course hub with deploy/jupyterhub/jupyterhub_config.py.

It checks what the hub needs (root, configurable-http-proxy, the lab's kernel), creates the
course folder and roster, with ``--demo`` the demo passwords (printed), and then becomes
JupyterHub, inside a private mount namespace when students could not otherwise reach the lab
(:mod:`labkit.hub.reach`). Stop it with Ctrl-C.
"""
from __future__ import annotations

import os
import secrets
import signal
import shutil
import sys
from pathlib import Path

from labkit.hub import reach
from labkit.hub.course import Course

LAB = Path(__file__).resolve().parents[2]
CONFIG = LAB / "deploy" / "jupyterhub" / "jupyterhub_config.py"


class HubError(RuntimeError):
    pass


def proxy_command() -> Path:
    return Path(sys.prefix) / "hub-node" / "node_modules" / ".bin" / "configurable-http-proxy"


def preflight() -> list[str]:
    """What is missing for a hub, each with its fix ([] when all is there)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the hub must run as root: it creates one Unix account per student and starts their "
                        "servers as them (sudo make hub)")
    if not proxy_command().exists():
        problems.append(f"configurable-http-proxy is missing ({proxy_command()}): run 'make setup' (needs npm)")
    if not (Path(sys.prefix) / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").exists():
        problems.append("the lab's python3 kernel is not installed in .venv: run 'make setup'")
    for tool in ("useradd", "userdel", "unshare", "mount"):
        if not shutil.which(tool):
            problems.append(f"'{tool}' is missing")
    return problems


def environment(course: Course, ip: str, port: int, demo: bool, keep_servers: bool, **extra) -> dict[str, str]:
    env = {**os.environ,
           "LABKIT_LAB": str(LAB), "LABKIT_COURSE": str(course.root), "LABKIT_HUB_IP": ip,
           "LABKIT_HUB_PORT": str(port), "LABKIT_HUB_DEMO": "1" if demo else "0",
           "LABKIT_STUDENT_PREFIX": course.prefix, "LABKIT_STUDENTS": ",".join(course.students),
           "LABKIT_CHP": str(proxy_command()), "LABKIT_HUB_KEEP_SERVERS": "1" if keep_servers else "0"}
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


def admin_token(course: Course) -> str:
    """The instructor tools' API token (created once, root-only)."""
    path = course.hub_state / "admin-token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def serve(course_root: str | Path | None, students: list[str], ip: str = "127.0.0.1", port: int = 8600,
          demo: bool = False, keep_servers: bool | None = None, echo=print, settings: dict | None = None) -> None:
    """Prepare everything, then exec JupyterHub (does not return)."""
    problems = preflight()
    if problems:
        raise HubError("cannot start the hub:\n  - " + "\n  - ".join(problems))
    course = Course.create(course_root, students)
    if not course.students:
        raise HubError(f"the course at {course.root} has no students: add some with --students alice bob")
    admin_token(course)
    if demo:
        from labkit.hub.auth import DEMO_BANNER, make_passwords

        passwords = make_passwords(course.hub_state / "demo-passwords.json", course.students)
        echo(DEMO_BANNER)
        for s in course.students:
            echo(f"  student {s:<12} password {passwords[s]}")
    keep = (not demo) if keep_servers is None else keep_servers
    env = environment(course, ip, port, demo, keep, **(settings or {}))
    os.environ.clear()
    os.environ.update(env)
    # A shell starts background jobs with SIGINT ignored, and children inherit that: JupyterHub
    # would then wait 30 s for each service that ignores its SIGINT before it sends SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.chdir(course.hub_state)
    argv = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)]
    blocked = reach.plan(reach.needed_paths(LAB, course.root))
    echo(f"course hub on http://{ip}:{port}/ (course {course.root}, {len(course.students)} students; Ctrl-C stops it)")
    sys.stdout.flush()
    if blocked:
        echo("students cannot reach " + ", ".join(str(b) for b in blocked) +
             ": the hub runs in a private mount namespace that exposes only "
             + ", ".join(str(p) for ps in blocked.values() for p in ps))
        sys.stdout.flush()
        reach.exec_in_namespace(blocked, argv)
    os.execv(argv[0], argv)
