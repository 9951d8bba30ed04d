"""Run a Python function on N Horovod workers (Gloo), from a notebook or a script.

    results = labkit.launch.run(train, np=2, timeout=300)   # one return value per rank

What it does, and why:

- ``fn`` and its arguments travel to the workers with cloudpickle, so a function defined in a
  notebook cell works. Each worker starts Horovod (:func:`labkit.distributed.init`) with an
  explicit thread budget before calling ``fn``.
- The workers are started by the real ``horovodrun --gloo``. ``hosts`` takes horovodrun's ``-H``
  syntax for clusters (see below).
- Rank 0's output streams live (into the notebook cell), without TensorFlow's start-up lines
  (:mod:`labkit.quiet`); the other ranks' output is kept for error messages. A worker that calls :func:`progress` drives a progress bar in the notebook.
- A wall-clock ``timeout`` covers the whole run. On timeout, on a crashed worker and on
  KeyboardInterrupt (a notebook's "interrupt kernel"), every process of the job is killed before
  returning, and :class:`WorkerError` names the rank that failed and why. Workers also watch the
  process that launched them and exit if it dies (a restarted kernel leaves no orphans).
- :func:`run_local` starts N plain Python processes without Horovod (each with its own
  environment, e.g. ``TF_CONFIG`` for ``tf.distribute.MultiWorkerMirroredStrategy``), with the
  same streaming, timeout and teardown.

Clusters: ``run(fn, np=8, hosts="node1:4,node2:4")`` runs 4 workers on each node. horovodrun
reaches the nodes by passwordless ``ssh`` (``horovodrun_args=["-p", "2222"]`` for another port),
every node needs the same Python environment at the same path, and the job folder that carries
``fn`` must be on a file system all nodes share: pass ``job_root="/shared/scratch"``.

- Host names of a running :mod:`labkit.cluster` (namespaced hosts on this machine, ``h1``, ``h2``,
  ...) work the same way: horovodrun then runs on the first host, and since every "host" shares
  this machine's cores, the default thread budget and ``pin_cores`` count all the job's workers.
- Teardown reaches every host: a worker records its host, pid and machine in the job folder, so
  workers on this machine (namespaced hosts included) are killed directly and workers on other
  machines through ``ssh HOST python -m labkit.launch --kill JOB``. Every worker also holds a
  lease on the job folder that the launcher renews each second: a worker whose launcher is gone
  (its lease is stale or its job folder deleted) exits by itself, wherever it runs.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle
import psutil

from labkit.quiet import is_noise
from labkit.threads import ThreadBudget, as_budget, pin_to_cores

#: horovodrun prefixes each worker line with its rank: ``[0]<stdout>:text`` (Gloo launcher).
_PREFIX = re.compile(r"^\[(\d+)\]<(stdout|stderr)>:(.*)$")
#: horovodrun names the first worker that failed: "... after failure of Process 1."
_FIRST_FAILURE = re.compile(r"failure of Process (\d+)")
_EXIT_STATUS = re.compile(r"Process (\d+) exit with status code (-?\d+)")
#: A worker's progress line (see :func:`progress`); the launcher turns it into a progress bar.
_PROGRESS_TAG = "@@labkit-progress "
#: A worker exits when its launcher has not renewed the job's lease for this many seconds.
LEASE_SECONDS = 30.0


def machine_id() -> str:
    """Which kernel and PID space this process lives in: processes with the same id can signal
    each other by pid (namespaced "hosts" of one machine share it; other machines don't)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return socket.gethostname()


class WorkerError(RuntimeError):
    """A job failed: ``rank`` (or None if no single rank is to blame) and ``reason``
    (``"timeout"``, the exception's last line, or how the process died)."""

    def __init__(self, message: str, rank: int | None = None, reason: str = "", output: str = ""):
        super().__init__(message)
        self.rank, self.reason, self.output = rank, reason, output


# --------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------
def progress(step: int, total: int, desc: str = "", **metrics) -> None:
    """Call from the training function on each rank: rank 0's calls drive the notebook's progress bar.

    ``metrics`` (e.g. ``loss=0.31``) appear next to the bar. Cheap: one short line per call.
    """
    payload = {"step": int(step), "total": int(total), "desc": desc,
               "metrics": {k: float(v) for k, v in metrics.items()}}
    print(_PROGRESS_TAG + json.dumps(payload), flush=True)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name if code < 0 else ""
    except ValueError:
        return ""


@dataclass
class _Job:
    """The files one run shares with its workers (and, for teardown, how to reach other machines)."""

    dir: Path
    ssh_args: list[str] | None = None  # set when workers may run on other machines

    def payload(self) -> Path:
        return self.dir / "job.pkl"

    def result(self, rank: int) -> Path:
        return self.dir / f"result.{rank}.pkl"

    def error(self, rank: int) -> Path:
        return self.dir / f"error.{rank}.txt"

    def pid(self, rank: int) -> Path:
        return self.dir / f"pid.{rank}"

    @property
    def lease(self) -> Path:
        return self.dir / "lease"

    def renew_lease(self) -> None:
        """The launcher is alive (workers watch this file's modification time)."""
        self.lease.touch()

    def write_pid(self, rank: int) -> None:
        """Record this worker as ``host pid start-time machine`` (so teardown finds it from any
        host, and never kills a process that merely reused its pid)."""
        me = psutil.Process()
        host = os.environ.get("HOROVOD_HOSTNAME") or socket.gethostname()  # the name horovodrun used
        self.pid(rank).write_text(f"{host} {me.pid} {me.create_time()!r} {machine_id()}")

    def where(self, rank: int) -> tuple[str, str] | None:
        """``(host, machine)`` of rank ``rank``'s worker, from its pid file."""
        try:
            host, _, _, machine = self.pid(rank).read_text().split()
            return host, machine
        except (OSError, ValueError):
            return None

    def local_worker(self, rank: int) -> psutil.Process | None:
        """Rank ``rank``'s process if it runs on this machine (in this PID space, whatever its
        hostname) and is still the one that wrote its pid file."""
        try:
            _, pid, started, machine = self.pid(rank).read_text().split()
            proc = psutil.Process(int(pid))
            if machine == machine_id() and abs(proc.create_time() - float(started)) < 0.01:
                return proc
        except (OSError, ValueError, psutil.Error):
            pass
        return None


def horovodrun_path() -> str:
    """``horovodrun`` from the same environment as this Python."""
    candidate = Path(sys.executable).parent / "horovodrun"
    if candidate.exists():
        return str(candidate)
    from shutil import which

    found = which("horovodrun")
    if not found:
        raise WorkerError("horovodrun not found: run 'make setup' (it builds Horovod into .venv).")
    return found


def _slots(hosts: str) -> dict[str, int]:
    """``"node1:4,node2:4"`` -> ``{"node1": 4, "node2": 4}`` (a host without ``:n`` has one slot)."""
    out = {}
    for entry in hosts.split(","):
        name, _, count = entry.strip().partition(":")
        if not name or (count and not count.isdigit()):
            raise ValueError(f"hosts must look like 'node1:4,node2:4', got {hosts!r}")
        out[name] = out.get(name, 0) + int(count or 1)
    return out


def _rank_hosts(hosts: str, np: int) -> list[str]:
    """The host of each rank: horovodrun fills the hosts in order, each up to its slots."""
    order = [name for name, count in _slots(hosts).items() for _ in range(count)]
    return order[:np]


def _machine_slots(hosts: str | None, np: int, shared_machine: bool) -> list[int]:
    """Each rank's index among the workers that share its machine's cores (for ``pin_cores``)."""
    if not hosts or shared_machine:
        return list(range(np))
    seen: dict[str, int] = {}
    out = []
    for host in _rank_hosts(hosts, np):
        out.append(seen.get(host, 0))
        seen[host] = out[-1] + 1
    return out


def horovodrun_command(job_dir: str | os.PathLike, np: int, hosts: str | None = None,
                       extra: list[str] | None = None) -> list[str]:
    """The ``horovodrun --gloo`` command line that starts ``np`` workers of the job in ``job_dir``.

    ``hosts`` is horovodrun's ``-H`` syntax, ``"node1:4,node2:4"`` (host:slots); by default all
    workers run here (``localhost:np``). Slots must add up to at least ``np``.
    """
    hosts = hosts or f"localhost:{np}"
    slots = sum(_slots(hosts).values())
    if slots < np:
        raise ValueError(f"hosts {hosts!r} offer {slots} slot(s), fewer than np={np}")
    return [horovodrun_path(), "--gloo", "-np", str(np), "-H", hosts, *(extra or []),
            sys.executable, "-m", "labkit.launch", str(job_dir)]


# --------------------------------------------------------------------------------------------
# Output: stream rank 0, keep everyone's tail, turn progress lines into a bar
# --------------------------------------------------------------------------------------------
class _Bar:
    """A tqdm bar (a widget in Jupyter, text in a terminal), created on the first progress line."""

    def __init__(self):
        self.bar = None

    def update(self, info: dict) -> None:
        from tqdm.auto import tqdm

        if self.bar is None or self.bar.total != info["total"] or info["step"] < self.bar.n:
            self.close()
            self.bar = tqdm(total=info["total"], desc=info.get("desc") or "rank 0", leave=True)
        self.bar.set_description(info.get("desc") or "rank 0", refresh=False)
        if info["metrics"]:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in info["metrics"].items()}, refresh=False)
        self.bar.update(info["step"] - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@dataclass
class _Output:
    """Collects workers' lines: streams rank 0's, keeps a tail of everyone's."""

    echo: bool
    show_progress: bool = True
    tails: dict = field(default_factory=dict)
    launcher: deque = field(default_factory=lambda: deque(maxlen=50))
    bar: _Bar = field(default_factory=_Bar)

    def feed(self, line: str) -> None:
        m = _PREFIX.match(line)
        if not m:
            self.launcher.append(line)
            return
        self.feed_rank(int(m.group(1)), m.group(3))

    def feed_rank(self, rank: int, text: str) -> None:
        if text.startswith(_PROGRESS_TAG):
            if self.echo and self.show_progress and rank == 0:
                try:
                    self.bar.update(json.loads(text[len(_PROGRESS_TAG):]))
                except Exception:  # noqa: BLE001 - a broken bar must never break the run
                    pass
            return
        if is_noise(text):  # TensorFlow's start-up lines, once per worker: not news
            return
        self.tails.setdefault(rank, deque(maxlen=30)).append(text)
        if self.echo and rank == 0:
            print(text, flush=True)

    def tail(self, rank: int | None) -> str:
        lines = self.launcher if rank is None else self.tails.get(rank, [])
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Teardown
# --------------------------------------------------------------------------------------------
def _kill_remote(job: _Job, np: int, ssh_args: list[str], timeout: float = 15.0) -> None:
    """Ask each other machine that runs a worker of ``job`` to kill it (``ssh HOST python -m
    labkit.launch --kill JOB``); the job folder is shared, so each host finds its own pid files."""
    hosts = {w[0] for r in range(np)
             if not job.result(r).exists() and (w := job.where(r)) and w[1] != machine_id()}
    calls = [subprocess.Popen(["ssh", *ssh_args, host, sys.executable, "-m", "labkit.launch", "--kill", str(job.dir)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for host in sorted(hosts)]
    for call in calls:
        try:
            call.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            call.kill()
            call.wait()


def _kill_tree(roots: list[subprocess.Popen], job: _Job, np: int, grace: float = 3.0) -> None:
    """Terminate the launched processes, their children and every worker we know of; SIGKILL what lingers."""
    procs = []
    for proc in roots:
        try:
            root = psutil.Process(proc.pid)
            procs += [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for rank in range(np):  # workers can outlive their launcher: find them by their pid files
        worker = job.local_worker(rank)
        if worker is not None:
            procs.append(worker)
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
    for proc in roots:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if job.ssh_args is not None:
        _kill_remote(job, np, job.ssh_args)


def _supervise(procs: list[subprocess.Popen], job: _Job, np: int, timeout: float, out: _Output,
               readers: list[threading.Thread], stop_on_failure: bool) -> None:
    """Wait for ``procs``; on timeout, interrupt or (if ``stop_on_failure``) one failing, kill them all."""
    deadline = time.monotonic() + timeout
    renewed = 0.0
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() - renewed > 1.0:
                job.renew_lease()
                renewed = time.monotonic()
            if time.monotonic() > deadline:
                _kill_tree(procs, job, np)
                raise WorkerError(
                    f"the job ran past its {timeout:g} s timeout and was stopped (all workers killed).\n"
                    f"Last output of rank 0:\n{out.tail(0)}", reason="timeout", output=out.tail(0))
            if stop_on_failure and any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        _kill_tree(procs, job, np)
        raise
    finally:
        if any(p.poll() is None for p in procs):
            _kill_tree(procs, job, np)
        for r in readers:
            r.join(timeout=5)
        out.bar.close()
    _kill_tree(procs, job, np, grace=1.0)  # nothing should be left; make sure of it


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------
def _base_env(threads: ThreadBudget, env: dict | None) -> dict:
    # Workers see the caller's sys.path, so functions from its modules unpickle there too.
    return {**os.environ, **threads.env(), "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "LABKIT_INTRA_OP": str(threads.intra_op), "LABKIT_INTER_OP": str(threads.inter_op),
            "LABKIT_PARENT": f"{machine_id()} {os.getpid()}", **(env or {})}


def run(fn, *args, np: int = 2, threads: ThreadBudget | int | None = None, timeout: float = 600,
        hosts: str | None = None, env: dict | None = None, echo: bool = True, progress_bar: bool = True,
        timeline: str | os.PathLike | None = None, horovodrun_args: list[str] | None = None,
        job_root: str | None = None, pin_cores: bool = False, cluster=None, **kwargs) -> list:
    """Run ``fn(*args, **kwargs)`` on ``np`` Horovod workers and return each rank's result.

    - ``threads``: per-worker budget (default: a fair share of one machine's cores among the
      workers on it: with ``hosts``, the busiest host's slots; on a :mod:`labkit.cluster` of
      namespaced hosts, which all share this machine, all ``np`` workers).
    - ``timeout``: seconds for the whole job, start-up included.
    - ``hosts``: horovodrun ``-H`` syntax, e.g. ``"node1:4,node2:4"`` (default ``localhost:np``);
      host names of the running :mod:`labkit.cluster` (``"h1:1,h2:1"``) run there.
    - ``env``: extra environment variables for the workers (e.g. ``HOROVOD_CYCLE_TIME``).
    - ``echo``: stream rank 0's output; ``progress_bar``: show :func:`progress` calls as a bar.
    - ``timeline``: write Horovod's Chrome-trace timeline to this file
      (read it with :func:`labkit.scaling.timeline.read_timeline`).
    - ``horovodrun_args``: extra flags, e.g. ``["-p", "2222"]``.
    - ``job_root``: where the job folder goes (a shared file system for multi-node runs).
    - ``pin_cores``: pin each worker to its own slice of its machine's cores
      (:func:`labkit.threads.pin_to_cores`; skipped where the slices don't fit).
    - ``cluster``: the :class:`labkit.cluster.Cluster` whose hosts ``hosts`` names (default:
      ``$LABKIT_CLUSTER``'s, or the one running cluster, if it has those hosts).
    """
    if np < 1:
        raise ValueError(f"np must be at least 1, got {np}")
    from labkit.cluster.netns import for_hosts  # stdlib only: cheap, and None without a cluster

    cluster = cluster if cluster is not None else for_hosts(hosts)
    # The default thread budget shares one machine's cores among the workers placed on it.
    per_machine = np if cluster or not hosts else min(np, max(_slots(hosts).values()))
    budget = as_budget(threads, per_machine)
    with tempfile.TemporaryDirectory(prefix="labkit-hvd-", dir=job_root) as tmp:
        remote = bool(hosts) and cluster is None and set(_rank_hosts(hosts, np)) - {"localhost", "127.0.0.1"}
        job = _Job(Path(tmp), ssh_args=_ssh_args(horovodrun_args) if remote else None)
        with open(job.payload(), "wb") as f:
            cloudpickle.dump((fn, args, kwargs), f)
        cmd = horovodrun_command(job.dir, np, hosts, horovodrun_args)
        if cluster is not None:  # horovodrun starts on the first host, inside the cluster's network
            cmd = cluster.command(_rank_hosts(hosts, np)[0], cmd)
        worker_env = _base_env(budget, env)
        if pin_cores:
            worker_env["LABKIT_PIN_CORES"] = ",".join(map(str, _machine_slots(hosts, np, cluster is not None)))
        if timeline is not None:
            Path(timeline).parent.mkdir(parents=True, exist_ok=True)
            worker_env["HOROVOD_TIMELINE"] = str(Path(timeline).resolve())
        out = _Output(echo=echo, show_progress=progress_bar)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=worker_env, start_new_session=True, bufsize=1)
        reader = threading.Thread(target=lambda: [out.feed(line.rstrip("\n")) for line in proc.stdout], daemon=True)
        reader.start()
        _supervise([proc], job, np, timeout, out, [reader], stop_on_failure=False)
        return _collect(job, np, out, f"horovodrun exit code {proc.returncode}")


def _ssh_args(horovodrun_args: list[str] | None) -> list[str]:
    """The ssh options horovodrun uses (its ``-p PORT`` and ``-i KEY``), for teardown by ssh."""
    args, extra = [], list(horovodrun_args or [])
    for flag, ssh_flag in (("-p", "-p"), ("--ssh-port", "-p"), ("-i", "-i"), ("--ssh-identity-file", "-i")):
        if flag in extra and extra.index(flag) + 1 < len(extra):
            args += [ssh_flag, extra[extra.index(flag) + 1]]
    return ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "ConnectTimeout=10", *args]


def run_local(fn, *args, np: int = 2, rank_env=None, threads: ThreadBudget | int | None = None,
              timeout: float = 600, env: dict | None = None, echo: bool = True, progress_bar: bool = True,
              **kwargs) -> list:
    """Run ``fn(*args, **kwargs)`` in ``np`` plain local processes (no Horovod); return each rank's result.

    ``rank_env(rank) -> dict`` adds per-rank environment variables (e.g. ``TF_CONFIG``); each
    process also sees ``LABKIT_RANK`` and ``LABKIT_SIZE``. Streaming, timeout and teardown are
    those of :func:`run`; when one process fails, the others are stopped.
    """
    if np < 1:
        raise ValueError(f"np must be at least 1, got {np}")
    budget = as_budget(threads, np)
    with tempfile.TemporaryDirectory(prefix="labkit-local-") as tmp:
        job = _Job(Path(tmp))
        with open(job.payload(), "wb") as f:
            cloudpickle.dump((fn, args, kwargs), f)
        out = _Output(echo=echo, show_progress=progress_bar)
        procs, readers = [], []
        try:
            for rank in range(np):
                e = {**_base_env(budget, env), "LABKIT_RANK": str(rank), "LABKIT_SIZE": str(np),
                     **(rank_env(rank) if rank_env else {})}
                p = subprocess.Popen([sys.executable, "-m", "labkit.launch", "--plain", str(job.dir)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e,
                                     start_new_session=True, bufsize=1)
                procs.append(p)
                t = threading.Thread(target=lambda p=p, r=rank: [out.feed_rank(r, line.rstrip("\n")) for line in p.stdout],
                                     daemon=True)
                t.start()
                readers.append(t)
        except BaseException:
            _kill_tree(procs, job, np)
            raise
        _supervise(procs, job, np, timeout, out, readers, stop_on_failure=True)
        failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode not in (0, None)]
        note = ", ".join(f"rank {r} exit code {c}" for r, c in failed) or "all exit codes 0"
        return _collect(job, np, out, note, first_failed=failed[0][0] if failed else None)


def _collect(job: _Job, np: int, out: _Output, exit_note: str, first_failed: int | None = None) -> list:
    """Each rank's result, or a WorkerError naming the rank that failed first and why."""
    launcher = out.tail(None)
    if first_failed is None:
        m = _FIRST_FAILURE.search(launcher)
        first_failed = int(m.group(1)) if m else None
    codes = {int(r): int(c) for r, c in _EXIT_STATUS.findall(launcher)}
    failed = [r for r in range(np) if not job.result(r).exists()]
    if not failed:
        results = []
        for rank in range(np):
            with open(job.result(rank), "rb") as f:
                results.append(cloudpickle.load(f))
        return results
    # Blame, in order: a rank with its own traceback, a rank that died without one (killed,
    # segfault), and only then a rank that failed because the others had gone ("collateral").
    # Among equals, the rank horovodrun saw fail first.
    def kind(r):
        if not job.error(r).exists():
            return 1
        return 2 if _collateral(job.error(r).read_text()) else 0

    rank = min(failed, key=lambda r: (kind(r), r != first_failed, r))
    if job.error(rank).exists():
        text = job.error(rank).read_text()
        reason = text.strip().splitlines()[-1] if text.strip() else "unknown error"
        raise WorkerError(f"rank {rank} failed: {reason}\n\n{text}", rank=rank, reason=reason,
                          output=out.tail(rank))
    code = codes.get(rank)
    if not job.pid(rank).exists():
        reason = "never started"
    elif code is not None and code < 0:
        reason = f"was killed by {_signal_name(code) or f'signal {-code}'}"
    elif code is not None:
        reason = f"exited with status {code} before finishing"
    else:
        reason = "exited before finishing (crashed or killed)"
    raise WorkerError(f"rank {rank} {reason} ({exit_note}).\n"
                      f"Last output of rank {rank}:\n{out.tail(rank)}\nLauncher:\n{launcher}",
                      rank=rank, reason=reason, output=out.tail(rank))


def _collateral(traceback_text: str) -> bool:
    """A rank that failed only because another rank died (Horovod shut the collective down)."""
    text = traceback_text.lower()
    return "horovod has been shut down" in text or ("horovod" in text and "shutdown" in text)


# --------------------------------------------------------------------------------------------
# Worker entry point
# --------------------------------------------------------------------------------------------
def _watch_parent(job: _Job) -> None:
    """Exit this worker if the job's launcher is gone (e.g. a restarted kernel), wherever it runs.

    On the launcher's machine (namespaced hosts included) it watches the launcher's pid. On every
    host it watches the job's lease: when the job folder is deleted, or the launcher has not
    renewed the lease for :data:`LEASE_SECONDS` (by this worker's own clock), it exits.
    """
    machine, _, pid = os.environ.get("LABKIT_PARENT", "").rpartition(" ")
    parent = int(pid) if pid.isdigit() and machine == machine_id() else None
    lease_seconds = float(os.environ.get("LABKIT_LEASE_SECONDS", LEASE_SECONDS))

    def watch():
        last, seen_at = None, time.monotonic()
        while True:
            time.sleep(1.0)
            if parent is not None and (not psutil.pid_exists(parent)
                                       or psutil.Process(parent).status() == psutil.STATUS_ZOMBIE):
                os._exit(70)
            if not job.dir.exists():
                os._exit(71)
            try:
                stamp = job.lease.stat().st_mtime
            except OSError:
                stamp = None
            if stamp != last:
                last, seen_at = stamp, time.monotonic()
            elif time.monotonic() - seen_at > lease_seconds:
                os._exit(72)

    with contextlib.suppress(psutil.Error):
        threading.Thread(target=watch, daemon=True, name="labkit-parent-watch").start()


def _kill_job_here(job_dir: str) -> int:
    """``python -m labkit.launch --kill JOB``: kill this machine's workers of the job (teardown by ssh)."""
    job = _Job(Path(job_dir))
    ranks = [int(p.suffix[1:]) for p in job.dir.glob("pid.*") if p.suffix[1:].isdigit()]
    victims = [w for r in ranks if (w := job.local_worker(r))]
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(victims, timeout=3)
    return 0


def _worker_main(job_dir: str, plain: bool = False) -> int:
    """Entry point of each worker process (``python -m labkit.launch [--plain] JOB_DIR``)."""
    job = _Job(Path(job_dir))
    rank = int(os.environ.get("LABKIT_RANK" if plain else "HOROVOD_RANK", "0"))
    job.write_pid(rank)
    _watch_parent(job)
    try:
        budget = ThreadBudget(int(os.environ.get("LABKIT_INTRA_OP", "1")), int(os.environ.get("LABKIT_INTER_OP", "1")))
        if plain:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(budget.intra_op)
            tf.config.threading.set_inter_op_parallelism_threads(budget.inter_op)
        else:
            from labkit import distributed

            ctx = distributed.init(budget)
            slots = os.environ.get("LABKIT_PIN_CORES")  # each rank's index among its machine's workers
            if slots:
                mine = slots.split(",")
                pin_to_cores(int(mine[ctx.rank]) if ctx.rank < len(mine) else ctx.local_rank, budget.intra_op)
        with open(job.payload(), "rb") as f:
            fn, args, kwargs = cloudpickle.load(f)
        result = fn(*args, **kwargs)
        tmp = job.result(rank).with_suffix(".tmp")
        with open(tmp, "wb") as f:
            cloudpickle.dump(result, f)
        tmp.rename(job.result(rank))
        return 0
    except BaseException:  # noqa: BLE001 - report everything, SystemExit included, to the parent
        job.error(rank).write_text(traceback.format_exc())
        return 1


if __name__ == "__main__":
    if sys.argv[1] == "--kill":
        sys.exit(_kill_job_here(sys.argv[2]))
    if sys.argv[1] == "--plain":
        sys.exit(_worker_main(sys.argv[2], plain=True))
    sys.exit(_worker_main(sys.argv[1]))
