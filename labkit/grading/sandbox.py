"""Run untrusted code in a sandbox: bubblewrap + an unprivileged user + resource limits.

What the sandboxed process sees and may do:

- its **own working folder** at ``/sandbox``: for a student's kernel, a private size-limited tmpfs
  (nothing it writes ever lands on the host's disk, and it vanishes with the sandbox), holding the
  assignment's allowed data files (``"data"`` in ``assignment.json``), each read-only at the same
  relative path; for :func:`run`, a host folder given by the caller;
- for a kernel, ``/run/kernel``: the folder of its ZMQ ``ipc`` sockets and connection file, through
  which the grader's notebook client (outside, :mod:`labkit.grading.client`) talks to it;
- read-only: ``/usr``, ``/etc``, the Python installation, the virtual environment and the
  ``labkit`` package; a private ``/tmp``. Nothing else of the host: not the repository (so not
  the hidden tests), not the gradebook, not the other submissions, not ``/root``;
- **no network**: its own network namespace holding only a loopback interface;
- its own PID namespace (it cannot see or signal host processes; killing it kills all of it);
- an **unprivileged user** (``labkit-sandbox<N>``, one per slot, created on first use; a grader
  locks its slots, :mod:`labkit.grading.slots`), no capabilities, ``no_new_privs``;
- **limits**: ``prlimit`` per process (CPU seconds, address space, processes of its user, file
  size, open files), and per slot a cgroup for the whole sandbox (memory of all its processes
  together, process count, a CPU quota: :mod:`labkit.grading.cgroups`) where the machine allows,
  else a memory watchdog; the grader enforces the wall time and kills the whole session.

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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import labkit
from labkit.grading import cgroups

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

    @property
    def tmpfs_bytes(self) -> int:
        """The size of the kernel's working-folder tmpfs: a little over the limit the watchdog enforces,
        so that the watchdog sees it crossed (and says so) before the tmpfs is full."""
        return (self.max_disk_mb + max(16, self.max_disk_mb // 8)) * 1024 * 1024

    @property
    def sandbox_memory_bytes(self) -> int:
        """The whole sandbox's memory bound (its cgroup): its processes plus its RAM-backed folders
        (the working folder, /tmp and /dev/shm are tmpfs, charged to the same cgroup)."""
        return (self.memory_mb + 64) * 1024 * 1024 + self.tmpfs_bytes + self.max_disk_mb * 1024 * 1024

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


def self_test(slot: int = 0, limits: Limits | None = None) -> None:
    """Start Python with the grading modules inside a sandbox once; raise if that fails.

    A sandbox that cannot start Python (a folder it needs not mounted, a broken user set-up) would
    otherwise fail every submission: a grader fault blamed on students. Costs about half a second
    per batch.
    """
    limits = limits or Limits(wall_seconds=60)
    with tempfile.TemporaryDirectory(prefix="labkit-selftest-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        probe = f"import labkit.grading.export, {KERNEL_MODULE}, zmq; print('labkit-sandbox-ok')"
        outcome = run(work, [sys.executable, "-I", "-c", probe], slot, limits)
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


KERNEL_DIR = "/run/kernel"      # where the kernel's sockets and connection file are, inside the sandbox
KERNEL_MODULE = "labkit.kernel"  # ipykernel without TensorFlow's start-up lines (labkit.quiet)


def kernel_argv(conn_dir: str = KERNEL_DIR) -> list[str]:
    """The kernel the sandbox runs: this Python, isolated mode, its connection file in ``conn_dir``
    (``/run/kernel`` inside the sandbox)."""
    return [sys.executable, "-I", "-Xfrozen_modules=off", "-m", KERNEL_MODULE, "-f", f"{conn_dir}/kernel.json",
            "--HistoryManager.enabled=False", "--IPKernelApp.quiet=True"]


def command(workdir: Path | None, argv: list[str], uid: int, gid: int, data: dict[str, Path] | None = None,
            limits: Limits | None = None, ipc: Path | None = None, info_fd: bool = False) -> list[str]:
    """The bwrap + setpriv command line that runs ``argv`` inside the sandbox.

    ``workdir`` None gives the sandbox a private tmpfs as its working folder (the kernel's case);
    ``ipc`` binds that host folder at ``/run/kernel``; ``info_fd`` asks bwrap for its child's PID on
    the file descriptor the caller puts in place of ``{info_fd}``.
    """
    limits = limits or Limits()
    cmd = ["bwrap", "--die-with-parent", "--new-session",
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--hostname", "sandbox"]
    if info_fd:
        cmd += ["--info-fd", "{info_fd}"]
    cmd += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
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
    made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev", "/sandbox", "/run", KERNEL_DIR}
    for root in _read_only_roots():
        parts = Path(root).parts
        for i in range(2, len(parts)):
            parent = str(Path(*parts[:i]))
            if parent not in made:
                cmd += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        cmd += ["--ro-bind", root, root]
        made.add(root)
    if workdir is None:
        cmd += ["--perms", "1777", "--size", str(limits.tmpfs_bytes), "--tmpfs", "/sandbox"]
    else:
        cmd += ["--bind", str(workdir), "/sandbox"]
    for rel, src in (data or {}).items():  # read-only, at the same relative path as in the assignment
        cmd += ["--ro-bind", str(src), f"/sandbox/{rel}"]
    if ipc is not None:
        cmd += ["--perms", "0755", "--dir", str(Path(KERNEL_DIR).parent), "--bind", str(ipc), KERNEL_DIR]
    cmd += ["--chdir", "/sandbox", "--clearenv",
            "--setenv", "PATH", f"{sys.prefix}/bin:/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--setenv", "JUPYTER_RUNTIME_DIR", "/tmp/jupyter", "--setenv", "IPYTHONDIR", "/tmp/ipython",
            "--setenv", "MPLCONFIGDIR", "/tmp/matplotlib", "--setenv", "MPLBACKEND", "agg",
            "--setenv", "TF_CPP_MIN_LOG_LEVEL", "2", "--setenv", "VIRTUAL_ENV", sys.prefix,
            "--setenv", "JUPYTER_PLATFORM_DIRS", "1", "--setenv", "PYDEVD_DISABLE_FILE_VALIDATION", "1",
            "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",  # only for setpriv, dropped below
            "--", "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--"]
    return cmd + argv


@dataclass
class SlotSetup:
    """What a run in one slot needs: its user, the cgroup files to join, and how memory is bounded."""

    uid: int
    gid: int
    joins: list[Path]
    group: "cgroups.SlotGroup | None"
    memory_dir: Path | None     # the slot's memory cgroup (None: the watchdog bounds memory)


def prepare_slot(slot: int, limits: Limits) -> SlotSetup:
    """The slot's user (created if missing) and a fresh cgroup with this run's limits (where possible)."""
    uid, gid = ensure_user(slot)
    lay = cgroups.layout()
    if lay is not None:
        group = cgroups.SlotGroup(slot, lay)
        try:
            joins = group.setup(limits.sandbox_memory_bytes, limits.max_processes, limits.cpus)
            return SlotSetup(uid, gid, joins, group, group.memory_dir if lay.has_memory else None)
        except OSError:
            group.remove()
    return SlotSetup(uid, gid, [], None, None)


def limited(argv: list[str], limits: Limits, cgroups_files: list[Path] = (), nproc: bool = True) -> list[str]:
    """``argv`` under rlimits (``prlimit``), inherited by bwrap, setpriv and everything they start,
    after joining the slot's cgroups (a tiny ``sh``; if a join fails, it exits 97 and nothing starts).
    No Python runs between fork and exec: the grader is multi-threaded, where ``preexec_fn`` can deadlock."""
    mb = 1024 * 1024
    cmd = ["prlimit", f"--cpu={limits.cpu_seconds}", f"--as={limits.memory_mb * mb}",
           f"--fsize={limits.max_file_mb * mb}", f"--nofile={limits.max_open_files}", "--core=0"]
    if nproc:
        cmd.append(f"--nproc={limits.max_processes}")
    cmd += ["--", *argv]
    if cgroups_files:
        join = ('for t in "$@"; do [ "$t" = -- ] && break; echo $$ 2>/dev/null >"$t" || exit 97; shift; done; '
                'shift; exec "$@"')
        cmd = ["/bin/sh", "-c", join, "labkit-sandbox", *map(str, cgroups_files), "--", *cmd]
    return cmd


def run(workdir: Path, argv: list[str], slot: int, limits: Limits, data: dict[str, Path] | None = None,
        sandbox: bool = True, max_stdout: int = 200_000) -> Outcome:
    """Run ``argv`` in the sandbox with ``workdir`` as ``/sandbox``; kill it at the wall limit.

    For commands of the grader's own (the self-test; tests). Student notebooks run through
    :mod:`labkit.grading.client` instead, which starts :func:`command` with a private working folder.
    """
    setup = None
    if sandbox:
        reason = available()
        if reason:
            raise SandboxUnavailable(reason)
        setup = prepare_slot(slot, limits)
        os.chown(workdir, setup.uid, setup.gid)
        for path in workdir.rglob("*"):
            os.chown(path, setup.uid, setup.gid, follow_symlinks=False)
        os.chmod(workdir, 0o700)
        full = command(workdir, argv, setup.uid, setup.gid, data, limits)
        cwd = None
    else:  # development without root: same process split, no isolation (the CLI says so loudly)
        full, cwd = argv, workdir
    start = time.perf_counter()
    full = limited(full, limits, setup.joins if setup else [], nproc=sandbox)
    proc = subprocess.Popen(full, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,  # killpg takes all of it
                            env=None if sandbox else {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    timed_out = False
    chunks, size = [], 0

    def pump():  # read in a thread so that a chatty sandbox can't block on a full pipe
        nonlocal size
        for block in iter(lambda: proc.stdout.read1(65536), b""):
            size += len(block)
            chunks.append(block)
            while sum(map(len, chunks)) > max_stdout and len(chunks) > 1:
                chunks.pop(0)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline, disk_exceeded = start + limits.wall_seconds, False
    try:
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
    finally:
        if setup is not None and setup.group is not None:
            setup.group.remove()
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
