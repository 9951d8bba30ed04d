"""Sandbox slots: each grader holds its own, so two graders running at once share nothing.

A slot ``N`` is a user, ``labkit-sandbox<N>`` (created on first use), and a cgroup,
``labkit-grading-slot<N>`` (:mod:`labkit.grading.cgroups`). A grader takes as many slots as it has workers
by locking ``/run/lock/labkit-grading/slot<N>.lock`` (``flock``) for as long as it runs: a second
grader finds those locked and takes the next free numbers. The kernel drops the locks when the
process ends, however it ends (``kill -9`` included), so a crashed grader never blocks a slot.

Slot users own nothing but the processes of the submission being graded: the per-user process
limit (``RLIMIT_NPROC``) and the memory watchdog (where there is no memory cgroup) count exactly one
sandbox.
"""
from __future__ import annotations

import fcntl
import os
import queue
import stat
import tempfile
from pathlib import Path

MAX_SLOTS = 256


def lock_dir() -> Path:
    """The folder of slot locks: root's own, never a link (as root: /run/lock/labkit-grading)."""
    base = Path("/run/lock") if os.geteuid() == 0 and Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
    folder = base / ("labkit-grading" if os.geteuid() == 0 else f"labkit-grading-{os.geteuid()}")
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise RuntimeError(f"{folder} is not a private folder of this user: refusing to use it for slot locks")
    return folder


class Slots:
    """Slot numbers this process holds (locked until :meth:`close` or the process ends).

    Threads take one with :meth:`get` and give it back with :meth:`put`.
    """

    def __init__(self, count: int):
        folder = lock_dir()
        self.held: dict[int, int] = {}
        for n in range(MAX_SLOTS):
            if len(self.held) == count:
                break
            fd = os.open(folder / f"slot{n}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.held[n] = fd
        if len(self.held) < count:
            self.close()
            raise RuntimeError(f"only {len(self.held)} of {count} sandbox slots are free (others are in use by "
                               "other graders)")
        self._free: queue.Queue = queue.Queue()
        for n in sorted(self.held):
            self._free.put(n)

    @property
    def numbers(self) -> list[int]:
        return sorted(self.held)

    def get(self) -> int:
        return self._free.get()

    def put(self, n: int) -> None:
        self._free.put(n)

    def close(self) -> None:
        for fd in self.held.values():
            os.close(fd)  # closing the file releases its flock
        self.held = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
