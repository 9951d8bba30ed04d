"""Per-student memory and CPU limits with cgroups, for the local-process spawner.

JupyterHub's ``LocalProcessSpawner`` only *passes* ``mem_limit``/``cpu_limit`` to the server as
``MEM_LIMIT``/``CPU_LIMIT``; nothing enforces them. Here each student gets a cgroup, nested
under the hub's own, that their server joins before it drops root. Everything it starts (kernels,
terminals, Horovod workers) inherits it, so the limit covers the whole student:

- memory: ``memory.limit_in_bytes`` (v1) / ``memory.max`` (v2): past it, the kernel's OOM
  killer ends the largest process of *that student* (usually a notebook kernel, which JupyterLab
  then restarts) and nobody else's;
- CPU: a CFS quota of ``cpu_limit`` cores, and equal shares, so that under contention students
  split the cores evenly;
- processes: ``pids.max`` against fork bombs.

cgroup v1 (this machine, and containers like it) and v2 are handled. Where neither is writable,
:func:`prepare` returns no files and the hub logs that limits are not enforced; on a systemd
machine, ``jupyterhub-systemdspawner`` is the tool for that (see deploy/README.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
GROUP = "labkit-hub"


@dataclass
class Limits:
    memory_bytes: int | None = None
    cpus: float | None = None
    max_pids: int | None = 1024


def _own(controller: str) -> str | None:
    """This process's cgroup path for a v1 ``controller`` ("" for v2's unified line), or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    return None


def _write(path: Path, value) -> bool:
    try:
        path.write_text(str(value))
        return True
    except OSError:
        return False


def _v1(controller: str, user: str) -> Path | None:
    mount, own = ROOT / controller, _own(controller)
    if own is None or not mount.is_dir():
        return None
    group = mount / own.lstrip("/") / GROUP / user
    try:
        group.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return group


def prepare(user: str, limits: Limits) -> list[Path]:
    """Create/refresh ``user``'s cgroups with ``limits``; return the ``cgroup.procs`` files to join."""
    joins = []
    if (ROOT / "cgroup.controllers").exists():  # v2: one hierarchy; we must not put processes in our parent
        own = _own("")
        base = ROOT / (own or "/").lstrip("/")
        group = base.parent / f"{GROUP}-{os.getpid()}" / user if own not in (None, "/") else ROOT / GROUP / user
        try:
            group.mkdir(parents=True, exist_ok=True)
            _write(group.parent / "cgroup.subtree_control", "+memory +cpu +pids")
        except OSError:
            return []
        if limits.memory_bytes:
            _write(group / "memory.max", limits.memory_bytes)
        if limits.cpus:
            _write(group / "cpu.max", f"{int(limits.cpus * 100000)} 100000")
        if limits.max_pids:
            _write(group / "pids.max", limits.max_pids)
        return [group / "cgroup.procs"]
    settings = {
        "memory": {"memory.limit_in_bytes": limits.memory_bytes} if limits.memory_bytes else {},
        "cpu": {"cpu.cfs_period_us": 100000, "cpu.shares": 1024,
                **({"cpu.cfs_quota_us": int(limits.cpus * 100000)} if limits.cpus else {})},
        "pids": {"pids.max": limits.max_pids} if limits.max_pids else {},
    }
    for controller, values in settings.items():
        group = _v1(controller, user)
        if group is None:
            continue
        if all(_write(group / k, v) for k, v in values.items()):
            joins.append(group / "cgroup.procs")
    return joins


def join(joins: list[Path], pid: int | None = None) -> None:
    """Put ``pid`` (default: this process) into the cgroups; runs between fork and exec, as root."""
    pid = pid or os.getpid()
    for procs in joins:
        try:
            with open(procs, "w") as fh:
                fh.write(str(pid))
        except OSError:
            pass


def usage(pid: int) -> dict:
    """What the memory cgroup of process ``pid`` reports now (bytes in use, peak, limit, OOM kills)."""
    out = {}
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return out
    paths = {}
    for line in lines:
        _, names, path = line.split(":", 2)
        for n in names.split(","):
            paths[n] = path
    if "memory" in paths:  # v1
        group = ROOT / "memory" / paths["memory"].lstrip("/")
        files = {"memory_bytes": "memory.usage_in_bytes", "memory_peak_bytes": "memory.max_usage_in_bytes",
                 "memory_limit_bytes": "memory.limit_in_bytes"}
        events = group / "memory.oom_control"
    elif "" in paths:  # v2
        group = ROOT / paths[""].lstrip("/")
        files = {"memory_bytes": "memory.current", "memory_peak_bytes": "memory.peak", "memory_limit_bytes": "memory.max"}
        events = group / "memory.events"
    else:
        return out
    out["cgroup"] = str(group)
    for key, name in files.items():
        try:
            out[key] = int((group / name).read_text())
        except (OSError, ValueError):
            pass
    try:
        fields = dict(line.split() for line in events.read_text().splitlines())
        out["oom_kills"] = int(fields.get("oom_kill", 0))
    except (OSError, ValueError):
        pass
    return out


def release(user: str) -> None:
    """Remove ``user``'s cgroups once nothing runs in them (best effort)."""
    for controller in ("memory", "cpu", "pids"):
        own = _own(controller)
        if own is not None:
            group = ROOT / controller / own.lstrip("/") / GROUP / user
            for folder in (group, group.parent):  # the parent only once no student is left
                try:
                    folder.rmdir()
                except OSError:
                    break
