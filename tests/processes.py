"""Processes a test leaves behind (used by conftest.py's check after every test, and by tests).

pytest becomes a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``), so a process orphaned by a
test (a worker whose launcher died, a daemon) is re-parented to pytest instead of init, where this
check can see it. After each test, every process that wasn't there before it and is still alive,
and every zombie that a ``subprocess.Popen`` of the test never waited for, is killed and reaped,
and the test errors at teardown naming what it left behind. Orphans that had already exited are
only reaped (init would have done that). Processes of module- and session-scoped fixtures exist
before the test starts, so they don't count.
"""
from __future__ import annotations

import ctypes
import gc
import os
import signal
import subprocess
import sys
import time

import psutil

PR_SET_CHILD_SUBREAPER = 36
#: how long a test's processes may take to finish exiting after the test returns
GRACE_SECONDS = 5.0


def _become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


SUBREAPER = _become_subreaper()  # on import: conftest.py imports this before any test runs


def _descendants() -> dict[int, psutil.Process]:
    try:
        return {p.pid: p for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return {}


def _describe(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())[:120] or p.name()
        return f"pid {p.pid} ({p.status()}): {cmd}"
    except psutil.Error:
        return f"pid {p.pid} (gone)"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_zombie(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _unwaited_popens() -> set[int]:
    """Pids of Popen objects whose process nobody has waited for (still referenced, or in
    subprocess's own list of abandoned ones)."""
    pids = {p.pid for p in getattr(subprocess, "_active", None) or []}
    pids |= {o.pid for o in gc.get_objects() if isinstance(o, subprocess.Popen) and o.returncode is None}
    return pids


def leftovers(before: set[int] = frozenset()) -> list[psutil.Process]:
    """Processes not in ``before`` that are alive, or zombies a Popen never waited for; exited
    orphans (re-parented to pytest, the subreaper) are reaped on the way."""
    found = [p for pid, p in _descendants().items() if pid not in before]
    zombies = [p for p in found if _is_zombie(p)]
    if not zombies:
        return found
    unwaited = _unwaited_popens()
    for z in zombies:
        if z.pid not in unwaited:
            _reap(z.pid)
    return [p for p in found if _exists(p) and (not _is_zombie(p) or p.pid in unwaited)]


def _exists(p: psutil.Process) -> bool:
    try:
        return p.is_running()
    except psutil.Error:
        return False
