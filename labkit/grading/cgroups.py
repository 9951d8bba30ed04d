"""One cgroup per sandbox slot: memory, process and CPU limits for *everything* a sandbox runs.

``prlimit`` bounds each process (its address space, say), but a submission can fork: eight children
of 1 GB each fit a 4 GB per-process limit. A cgroup bounds their sum. Each slot gets its own group,
``labkit-grading-slot<N>``, recreated for every submission (so its peak and OOM counters are that run's):

- **cgroup v2** (one ``cgroup2`` mount with the ``memory`` controller): the group is created at the
  mount's root, the only place v2 lets a process that lives elsewhere enable controllers for it;
  ``memory.max`` (and ``memory.swap.max = 0``), ``pids.max``, ``cpu.max``;
- **cgroup v1** (per-controller mounts, as on this project's build machines): the group is created
  *under the grader's own cgroup* of each controller, so it never escapes limits put on the grader;
  ``memory.limit_in_bytes`` (+ ``memsw``), ``pids.max``, ``cpu.cfs_quota_us``;
- **neither** (no memory controller, or not root): :func:`layout` says so, and the notebook client
  falls back to a watchdog that sums the resident memory of the slot user's processes twice a
  second (a burst between two looks can pass the limit briefly; the per-process ``prlimit`` still
  applies).

The sandbox joins the group before it starts (a tiny ``sh`` that writes its own PID into the
group's ``cgroup.procs`` and then ``exec``\\ s); if that write fails, the sandbox does not start.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu")


@dataclass
class Layout:
    version: int                # 2 or 1
    parents: dict[str, Path]    # v2: {"unified": mount}; v1: controller -> the grader's own group there

    @property
    def has_memory(self) -> bool:
        return self.version == 2 or "memory" in self.parents


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of every cgroup mount."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            out.append((fields[4].replace("\\040", " "), rest[0], rest[2]))
    return out


def _own_paths() -> dict[str, str]:
    """This process's cgroup per v1 controller (and ``""`` for v2), from /proc/self/cgroup."""
    out = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    except (OSError, ValueError):
        pass
    return out


_LAYOUT: list = []


def layout() -> Layout | None:
    """How slot cgroups are made on this machine, or None when they can't be (not root, no cgroups)."""
    if _LAYOUT:
        return _LAYOUT[0]
    found = None
    if os.geteuid() == 0:
        mounts, own = _mounts(), _own_paths()
        for point, fstype, _ in mounts:
            if fstype != "cgroup2":
                continue
            root = Path(point)
            try:
                available = (root / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if "memory" not in available:
                continue
            try:  # let the root's children use the controllers (a no-op where systemd already did)
                enabled = (root / "cgroup.subtree_control").read_text().split()
                missing = [c for c in CONTROLLERS if c in available and c not in enabled]
                if missing:
                    (root / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
                if "memory" in (root / "cgroup.subtree_control").read_text().split():
                    found = Layout(2, {"unified": root})
                    break
            except OSError:
                continue
        if found is None:
            parents = {}
            for point, fstype, options in mounts:
                if fstype != "cgroup":
                    continue
                for c in CONTROLLERS:
                    if c in options.split(",") and c in own and c not in parents:
                        parent = Path(point) / own[c].lstrip("/")
                        if parent.is_dir() and os.access(parent, os.W_OK):
                            parents[c] = parent
            if parents:
                found = Layout(1, parents)
    _LAYOUT.append(found)
    return found


class SlotGroup:
    """The cgroup(s) of one slot: :meth:`setup` before a run, :meth:`remove` after it."""

    def __init__(self, slot: int, lay: Layout):
        self.name, self.layout = f"labkit-grading-slot{slot}", lay

    @property
    def dirs(self) -> dict[str, Path]:
        if self.layout.version == 2:
            return {"unified": self.layout.parents["unified"] / self.name}
        return {c: parent / self.name for c, parent in self.layout.parents.items()}

    @property
    def memory_dir(self) -> Path | None:
        d = self.dirs
        return d.get("unified") or d.get("memory")

    def setup(self, memory_bytes: int, max_processes: int, cpus: float | None) -> list[Path]:
        """(Re)create the group with these limits; returns the files the sandbox writes its PID into.
        Raises OSError when a limit can't be set (the caller then treats the machine as cgroup-less)."""
        self.remove()
        period = 100_000
        quota = f"{int(period * cpus)}" if cpus else "max"
        joins = []
        for c, d in self.dirs.items():
            d.mkdir()
            if c == "unified":
                (d / "memory.max").write_text(str(memory_bytes))
                _maybe(d / "memory.swap.max", "0")
                _maybe(d / "pids.max", str(max_processes))
                _maybe(d / "cpu.max", f"{quota} {period}")
            elif c == "memory":
                (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
                _maybe(d / "memory.memsw.limit_in_bytes", str(memory_bytes))
            elif c == "pids":
                (d / "pids.max").write_text(str(max_processes))
            elif c == "cpu":
                (d / "cpu.cfs_period_us").write_text(str(period))
                (d / "cpu.cfs_quota_us").write_text(quota if cpus else "-1")
            joins.append(d / "cgroup.procs")
        return joins

    def pids(self) -> set[int]:
        found = set()
        for d in self.dirs.values():
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return found

    def kill(self, wait: float = 5.0) -> bool:
        """Kill every process in the group; True when it is empty."""
        deadline = time.monotonic() + wait
        while True:
            left = self.pids()
            if not left:
                return True
            if time.monotonic() > deadline:
                return False
            unified = self.dirs.get("unified")
            if unified is not None and (unified / "cgroup.kill").exists():
                _maybe(unified / "cgroup.kill", "1")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.05)

    def remove(self) -> None:
        """Kill what is left and delete the group (nothing to do when it doesn't exist)."""
        if not any(d.exists() for d in self.dirs.values()):
            return
        self.kill()
        for d in self.dirs.values():
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _maybe(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass
