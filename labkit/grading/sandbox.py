"""Run untrusted code in a sandbox: bubblewrap + an unprivileged user + resource limits.

What the sandboxed process sees and may do:

- its **own working folder** (mounted read-write at ``/sandbox``) holding only the prepared
  submission, and the assignment's allowed data files (``"data"`` in ``assignment.json``),
  each read-only at the same relative path under ``/sandbox``;
- read-only: ``/usr``, ``/etc``, the Python installation, the virtual environment and the
  ``labkit`` package; a private ``/tmp``. Nothing else of the host: not the repository (so not
  the hidden tests), not the gradebook, not the other submissions, not ``/root``;
- **no network**: its own network namespace holding only a loopback interface (the kernel and
  papermill talk over it);
- its own PID namespace (it cannot see or signal host processes; killing it kills all of it);
- an **unprivileged user** (``labkit-sandbox<N>``, one per concurrent slot, created on first use),
  no capabilities, ``no_new_privs``;
- **limits** (``prlimit``, inherited by every process inside): CPU seconds, address space, number
  of processes/threads of its user, file size, open files; per-slot cgroups (CPU quota, pids)
  where the machine allows; the grader enforces the wall time and kills the whole session.

Needs root (to mount, and to switch users) and ``bwrap`` (Debian package ``bubblewrap``).
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import labkit

USER_PREFIX = "labkit-sandbox"


class SandboxUnavailable(RuntimeError):
    """The machine cannot sandbox (not root, or bubblewrap missing): said with the fix."""


@dataclass
class Limits:
    wall_seconds: float = 300
    cpu_seconds: int = 600
    memory_mb: int = 4096
    max_processes: int = 256
    max_file_mb: int = 64
    max_open_files: int = 1024
    max_disk_mb: int = 512      # the working folder (watched), and the private /tmp (a sized tmpfs)
    max_files: int = 10_000     # files and folders in the working folder
    cpus: float | None = None   # CPU cores this sandbox may use at most (a cgroup quota)

    @classmethod
    def from_settings(cls, s: dict) -> "Limits":
        return cls(wall_seconds=s["timeout"], cpu_seconds=s["cpu_seconds"], memory_mb=s["memory_mb"],
                   max_processes=s["max_processes"], max_file_mb=s["max_file_mb"],
                   max_disk_mb=s.get("max_disk_mb", 512), max_files=s.get("max_files", 10_000))


@dataclass
class Outcome:
    returncode: int | None
    seconds: float
    timed_out: bool         # killed by the grader at the wall-time limit (observed, not reported)
    stdout: str             # the tail of what the sandbox printed (untrusted)
    disk_exceeded: bool = False  # wrote more than max_disk_mb / max_files (observed by the grader)


def available() -> str | None:
    """None when sandboxing works here, else why not (and how to fix it)."""
    if os.geteuid() != 0:
        return "the sandbox needs root (to mount and to switch to the unprivileged grading user)"
    if not shutil.which("bwrap"):
        return "bubblewrap is missing: 'apt-get install -y bubblewrap' (tools/setup.sh does this)"
    for tool in ("setpriv", "prlimit"):
        if not shutil.which(tool):
            return f"{tool} is missing: 'apt-get install -y util-linux'"
    return None


def self_test(limits: Limits | None = None) -> None:
    """Start Python with the grading modules inside a sandbox once; raise if that fails.

    A sandbox that cannot start Python (a folder it needs not mounted, a broken user set-up) would
    otherwise fail every submission as "crashed": a grader fault blamed on students. Costs about
    half a second per batch.
    """
    limits = limits or Limits(wall_seconds=60)
    with tempfile.TemporaryDirectory(prefix="labkit-selftest-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        probe = "import labkit.grading.execute, papermill, nbformat; print('labkit-sandbox-ok')"
        outcome = run(work, [sys.executable, "-c", probe], 0, limits)
    if outcome.returncode != 0 or "labkit-sandbox-ok" not in outcome.stdout:
        tail = "\n".join(outcome.stdout.strip().splitlines()[-5:])
        raise SandboxUnavailable(f"the sandbox could not start Python with labkit (exit {outcome.returncode}); "
                                 f"nothing was graded. It said:\n{tail}")


def ensure_user(slot: int) -> tuple[int, int]:
    """The uid and gid of ``labkit-sandbox<slot>``, creating the user if missing (idempotent)."""
    name = f"{USER_PREFIX}{slot}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        result = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                 "--shell", "/usr/sbin/nologin", "--user-group", name],
                                capture_output=True, text=True)
        if result.returncode not in (0, 9):  # 9: created meanwhile by another grader
            raise SandboxUnavailable(f"could not create the grading user {name}: {result.stderr.strip()}")
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _read_only_roots() -> list[str]:
    """Host folders the sandbox needs read-only: Python, the venv, the labkit package."""
    roots = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix,
             str(Path(labkit.__file__).resolve().parent)}
    exe = os.path.realpath(sys.executable)
    if not any(exe.startswith(r + os.sep) for r in roots):
        roots.add(os.path.dirname(exe))
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path and not any(os.path.realpath(path).startswith(r + os.sep) for r in roots):
            roots.add(os.path.realpath(path))
    # keep the deepest distinct folders only, shallow first (bwrap mounts in order)
    return sorted(roots, key=lambda p: (p.count(os.sep), p))


def command(workdir: Path, argv: list[str], uid: int, gid: int, data: dict[str, Path] | None = None,
            limits: Limits | None = None) -> list[str]:
    """The bwrap + setpriv command line that runs ``argv`` inside the sandbox."""
    limits = limits or Limits()
    cmd = ["bwrap", "--die-with-parent", "--new-session",
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--hostname", "sandbox",
           "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for link in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.is_dir():
            cmd += ["--ro-bind", str(target), f"/{link}"]
    # The private /tmp, /dev and /proc first: the read-only folders below may live under /tmp (a
    # checkout in /tmp, as CI may have it), and a tmpfs mounted after them would hide them.
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(limits.max_disk_mb * 1024 * 1024),
            "--tmpfs", "/tmp",
            # a small private /dev/shm: joblib (imported by TensorFlow, via scikit-learn) wants semaphores there
            "--perms", "1777", "--size", str(64 * 1024 * 1024), "--tmpfs", "/dev/shm"]
    made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev", "/sandbox"}
    for root in _read_only_roots():
        parts = Path(root).parts
        for i in range(2, len(parts)):
            parent = str(Path(*parts[:i]))
            if parent not in made:
                cmd += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        cmd += ["--ro-bind", root, root]
        made.add(root)
    cmd += ["--bind", str(workdir), "/sandbox"]
    for rel, src in (data or {}).items():  # read-only, at the same relative path as in the assignment
        cmd += ["--ro-bind", str(src), f"/sandbox/{rel}"]
    cmd += ["--chdir", "/sandbox", "--clearenv",
            "--setenv", "PATH", f"{sys.prefix}/bin:/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--setenv", "JUPYTER_RUNTIME_DIR", "/tmp/jupyter", "--setenv", "IPYTHONDIR", "/tmp/ipython",
            "--setenv", "MPLCONFIGDIR", "/tmp/matplotlib", "--setenv", "MPLBACKEND", "agg",
            "--setenv", "TF_CPP_MIN_LOG_LEVEL", "2", "--setenv", "VIRTUAL_ENV", sys.prefix,
            "--setenv", "JUPYTER_PLATFORM_DIRS", "1",
            "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",  # only for setpriv, dropped below
            "--", "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--"]
    return cmd + argv


CGROUP_V1 = Path("/sys/fs/cgroup")


def slot_cgroups(slot: int, limits: Limits) -> list[Path]:
    """Per-slot cgroups (CPU quota, process count) where the machine lets us; [] elsewhere.

    They keep a fork bomb or a busy loop in one slot from starving the submission graded in the
    other slot: each slot gets at most ``limits.cpus`` cores and ``max_processes`` tasks,
    whatever the user ids. cgroup v1 (``cpu``, ``pids``) and v2 are both handled; failures are
    silent because rlimits still apply.
    """
    joined = []
    period = 100_000
    quota = int(period * limits.cpus) if limits.cpus else -1
    v2 = CGROUP_V1 / "cgroup.controllers"
    try:
        if v2.exists():
            group = CGROUP_V1 / f"labkit-slot{slot}"
            group.mkdir(exist_ok=True)
            (group / "pids.max").write_text(str(limits.max_processes)) if (group / "pids.max").exists() else None
            if (group / "cpu.max").exists():
                (group / "cpu.max").write_text(f"{quota if quota > 0 else 'max'} {period}")
            joined.append(group / "cgroup.procs")
            return joined
        for controller, settings in (("cpu", {"cpu.cfs_period_us": period, "cpu.cfs_quota_us": quota}),
                                     ("pids", {"pids.max": limits.max_processes})):
            group = CGROUP_V1 / controller / f"labkit-slot{slot}"
            if not group.parent.is_dir():
                continue
            group.mkdir(exist_ok=True)
            for name, value in settings.items():
                (group / name).write_text(str(value))
            joined.append(group / "tasks")
    except OSError:
        pass
    return joined


def limited(argv: list[str], limits: Limits, cgroups: list[Path] = (), nproc: bool = True) -> list[str]:
    """``argv`` under rlimits (``prlimit``), inherited by bwrap, setpriv and everything they start,
    after joining the slot's cgroups (a tiny ``sh``). No Python runs between fork and exec: the
    grader is multi-threaded, where ``preexec_fn`` can deadlock."""
    mb = 1024 * 1024
    cmd = ["prlimit", f"--cpu={limits.cpu_seconds}", f"--as={limits.memory_mb * mb}",
           f"--fsize={limits.max_file_mb * mb}", f"--nofile={limits.max_open_files}", "--core=0"]
    if nproc:
        cmd.append(f"--nproc={limits.max_processes}")
    cmd += ["--", *argv]
    if cgroups:
        join = 'for t in "$@"; do [ "$t" = -- ] && break; echo $$ 2>/dev/null >"$t"; shift; done; shift; exec "$@"'
        cmd = ["/bin/sh", "-c", join, "labkit-sandbox", *map(str, cgroups), "--", *cmd]
    return cmd


def run(workdir: Path, argv: list[str], slot: int, limits: Limits, data: dict[str, Path] | None = None,
        sandbox: bool = True, max_stdout: int = 200_000) -> Outcome:
    """Run ``argv`` in the sandbox with ``workdir`` as ``/sandbox``; kill it at the wall limit."""
    if sandbox:
        reason = available()
        if reason:
            raise SandboxUnavailable(reason)
        uid, gid = ensure_user(slot)
        os.chown(workdir, uid, gid)
        for path in workdir.rglob("*"):
            os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(workdir, 0o700)
        full = command(workdir, argv, uid, gid, data, limits)
        cwd = None
    else:  # development without root: same process split, no isolation (the CLI says so loudly)
        full, cwd = argv, workdir
    start = time.perf_counter()
    full = limited(full, limits, slot_cgroups(slot, limits) if sandbox else [], nproc=sandbox)
    proc = subprocess.Popen(full, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,  # killpg takes all of it
                            env=None if sandbox else {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    timed_out = False
    chunks, size = [], 0
    # read in a thread so that a chatty sandbox can't block on a full pipe
    import threading

    def pump():
        nonlocal size
        for block in iter(lambda: proc.stdout.read(65536), b""):
            size += len(block)
            chunks.append(block)
            while sum(map(len, chunks)) > max_stdout and len(chunks) > 1:
                chunks.pop(0)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline, disk_exceeded = start + limits.wall_seconds, False
    while proc.poll() is None:  # the watchdog: wall time, and the working folder's size, every second
        try:
            proc.wait(timeout=max(0.01, min(1.0, deadline - time.perf_counter())))
        except subprocess.TimeoutExpired:
            timed_out = time.perf_counter() >= deadline
            disk_exceeded = over_disk_limits(workdir, limits)
            if timed_out or disk_exceeded:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # bwrap dies; its PID namespace goes with it
                except ProcessLookupError:
                    pass
                proc.wait()
    disk_exceeded = disk_exceeded or over_disk_limits(workdir, limits)
    reader.join(timeout=10)
    text = b"".join(chunks)[-max_stdout:].decode("utf-8", "replace")
    return Outcome(returncode=proc.returncode, seconds=round(time.perf_counter() - start, 2),
                   timed_out=timed_out, stdout=text, disk_exceeded=disk_exceeded)


def over_disk_limits(root: Path, limits: Limits) -> bool:
    """Whether the working folder holds more than ``max_disk_mb`` or ``max_files`` (links not followed)."""
    used, entries, stack = 0, 0, [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            used += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass
                    if entries > limits.max_files or used > limits.max_disk_mb * 1024 * 1024:
                        return True
        except OSError:
            pass
    return False
