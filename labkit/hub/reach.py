"""Can students reach the lab? And if not, show them exactly what they need, and nothing more.

Students' servers run the lab's ``.venv`` Python as the student. That needs every folder on the
way to it, to the Python installation the venv was made from, to the repository (``labkit`` is
installed editable) and to the course exchange, to be searchable by others (``o+x``). A clone
under ``/root``, or a venv made from a pyenv Python in ``/root/.pyenv``, breaks that: ``/root``
is 0700.

The fix for a course machine is to install the lab where students can read it (``/opt``,
``/srv``). When that is not the case, :func:`exec_in_namespace` starts the hub in a private
mount namespace (``unshare --mount``) in which each blocked folder (say ``/root``) is covered by
an empty, world-searchable tmpfs holding bind mounts of just the needed paths. The hub's
children (every student's server and kernel) inherit that view; the rest of the machine's
``/root`` stays invisible to students, and the host's own view is unchanged.
"""
from __future__ import annotations

import os
import shlex
import stat
import sys
import sysconfig
from pathlib import Path


def blocked_ancestor(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that others cannot search, or None."""
    path = Path(os.path.abspath(path))
    for folder in [*reversed(path.parents), path]:
        try:
            st = os.stat(folder)
        except OSError:
            return None
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
            return folder
    return None


def needed_paths(lab: Path, course: Path) -> list[Path]:
    """What students' processes must reach: the repository (with .venv), the base Python, the course."""
    base = Path(os.path.realpath(sysconfig.get_config_var("prefix") or sys.base_prefix))
    venv_python = Path(os.path.realpath(Path(sys.prefix) / "bin" / "python"))
    paths = {Path(os.path.realpath(lab)), Path(os.path.realpath(sys.prefix)), base,
             venv_python.parent.parent, Path(os.path.realpath(course))}
    return sorted(paths)


def plan(paths: list[Path]) -> dict[Path, list[Path]]:
    """``{blocked folder: [paths under it to expose]}`` (outermost blocked folder only)."""
    out: dict[Path, list[Path]] = {}
    for p in paths:
        b = blocked_ancestor(p)
        if b is None:
            continue
        if b == p:
            raise RuntimeError(f"{p} itself is not searchable by others (mode {oct(os.stat(p).st_mode & 0o777)}): "
                               "make it o+x or move it")
        out.setdefault(b, [])
        if not any(p == q or q in p.parents for q in out[b]):
            out[b] = [q for q in out[b] if p not in q.parents] + [p]
    return out


def mount_script(blocked: dict[Path, list[Path]]) -> str:
    """A shell script (run as root inside a private mount namespace) that exposes the paths."""
    lines = ["set -eu"]
    for i, (folder, paths) in enumerate(blocked.items()):
        stage = f"/tmp/.labkit-hub-stage-{os.getpid()}-{i}"
        q = shlex.quote
        lines += [f"mkdir -p {q(stage)}", f"mount --bind {q(str(folder))} {q(stage)}",
                  f"mount -t tmpfs -o mode=0755,size=1m labkit-hub {q(str(folder))}"]
        for p in paths:
            rel = p.relative_to(folder)
            lines += [f"mkdir -p {q(str(p))}", f"mount --bind {q(stage + '/' + str(rel))} {q(str(p))}"]
        lines += [f"umount {q(stage)}", f"rmdir {q(stage)}"]
    lines.append('exec "$@"')
    return "\n".join(lines)


def exec_in_namespace(blocked: dict[Path, list[Path]], argv: list[str]) -> None:
    """Replace this process by ``argv`` running in a private mount namespace that exposes ``blocked``."""
    script = mount_script(blocked)
    os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--",
                          "/bin/sh", "-c", script, "labkit-hub", *argv])


def as_student(unix_name: str, argv: list[str], lab: Path, course: Path) -> list[str]:
    """``argv`` run as the student (run it as root), in the same view of the machine the hub gives
    them: for an instructor checking what a student sees, and for the tests."""
    import pwd

    entry = pwd.getpwnam(unix_name)
    inner = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--", *argv]
    blocked = plan(needed_paths(lab, course))
    if not blocked:
        return inner
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", mount_script(blocked),
            "labkit-hub", *inner]
