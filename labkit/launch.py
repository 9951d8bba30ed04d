"""Run a Python function on N Horovod workers (Gloo), from a notebook or a script.

    results = labkit.launch.run(train, np=2, timeout=300)   # one return value per rank

What it does, and why:

- ``fn`` and its arguments travel to the workers with cloudpickle, so a function defined in a
  notebook cell works. Each worker starts Horovod (:func:`labkit.distributed.init`) with an
  explicit thread budget before calling ``fn``.
- The workers are started by the real ``horovodrun --gloo`` (``-H`` hosts for clusters).
- Rank 0's output streams live (into the notebook cell); the other ranks' output is kept for
  error messages.
- A wall-clock ``timeout`` covers the whole run. On timeout, on a crashed worker and on
  KeyboardInterrupt (a notebook's "interrupt kernel"), every process of the job is killed before
  returning, and :class:`WorkerError` names the rank that failed and why.
"""
from __future__ import annotations

import os
import re
import signal
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

from labkit.threads import ThreadBudget, thread_budget

#: horovodrun prefixes each worker line with its rank: ``[0]<stdout>:text`` (Gloo launcher).
_PREFIX = re.compile(r"^\[(\d+)\]<(stdout|stderr)>:(.*)$")


class WorkerError(RuntimeError):
    """A Horovod job failed: ``rank`` (or None if no single rank is to blame) and ``reason``."""

    def __init__(self, message: str, rank: int | None = None, reason: str = "", output: str = ""):
        super().__init__(message)
        self.rank, self.reason, self.output = rank, reason, output


@dataclass
class _Job:
    """The files one run shares with its workers."""

    dir: Path

    def payload(self) -> Path:
        return self.dir / "job.pkl"

    def result(self, rank: int) -> Path:
        return self.dir / f"result.{rank}.pkl"

    def error(self, rank: int) -> Path:
        return self.dir / f"error.{rank}.txt"

    def pid(self, rank: int) -> Path:
        return self.dir / f"pid.{rank}"


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


@dataclass
class _Output:
    """Collects workers' lines: streams rank 0's, keeps a tail of everyone's."""

    echo: bool
    tails: dict = field(default_factory=dict)
    launcher: deque = field(default_factory=lambda: deque(maxlen=50))

    def feed(self, line: str) -> None:
        m = _PREFIX.match(line)
        if not m:
            self.launcher.append(line)
            return
        rank, text = int(m.group(1)), m.group(3)
        self.tails.setdefault(rank, deque(maxlen=30)).append(text)
        if self.echo and rank == 0:
            print(text, flush=True)

    def tail(self, rank: int | None) -> str:
        lines = self.launcher if rank is None else self.tails.get(rank, [])
        return "\n".join(lines)


def _kill_tree(proc: subprocess.Popen, job: _Job, np: int, grace: float = 3.0) -> None:
    """Terminate horovodrun, its children and every worker we know of; SIGKILL what lingers."""
    procs = []
    try:
        root = psutil.Process(proc.pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    for rank in range(np):  # workers can outlive their launcher: find them by their pid files
        try:
            procs.append(psutil.Process(int(job.pid(rank).read_text())))
        except (OSError, ValueError, psutil.NoSuchProcess):
            pass
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
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def run(fn, *args, np: int = 2, threads: ThreadBudget | int | None = None, timeout: float = 600,
        hosts: str | None = None, env: dict | None = None, echo: bool = True,
        horovodrun_args: list[str] | None = None, **kwargs) -> list:
    """Run ``fn(*args, **kwargs)`` on ``np`` Horovod workers and return each rank's result.

    - ``threads``: per-worker budget (default: a fair share of this machine's cores).
    - ``timeout``: seconds for the whole job, start-up included.
    - ``hosts``: horovodrun ``-H`` syntax, e.g. ``"node1:4,node2:4"`` (default ``localhost:np``).
    - ``env``: extra environment variables for the workers (e.g. ``HOROVOD_CYCLE_TIME``).
    - ``horovodrun_args``: extra flags, e.g. ``["--timeline-filename", "t.json"]``.
    """
    if np < 1:
        raise ValueError(f"np must be at least 1, got {np}")
    if threads is None:
        threads = thread_budget(np)
    elif isinstance(threads, int):
        threads = ThreadBudget(intra_op=threads)
    with tempfile.TemporaryDirectory(prefix="labkit-hvd-") as tmp:
        job = _Job(Path(tmp))
        with open(job.payload(), "wb") as f:
            cloudpickle.dump((fn, args, kwargs), f)
        cmd = [horovodrun_path(), "--gloo", "-np", str(np), "-H", hosts or f"localhost:{np}",
               *(horovodrun_args or []), sys.executable, "-m", "labkit.launch", str(job.dir)]
        # Workers see the caller's sys.path, so functions from its modules unpickle there too.
        worker_env = {**os.environ, **threads.env(), "PYTHONUNBUFFERED": "1",
                      "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                      "LABKIT_INTRA_OP": str(threads.intra_op), "LABKIT_INTER_OP": str(threads.inter_op),
                      **(env or {})}
        out = _Output(echo=echo)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=worker_env, start_new_session=True, bufsize=1)
        reader = threading.Thread(target=lambda: [out.feed(line.rstrip("\n")) for line in proc.stdout], daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    _kill_tree(proc, job, np)
                    raise WorkerError(f"the Horovod job ran past its {timeout:g} s timeout and was stopped "
                                      "(all workers killed).", reason="timeout", output=out.tail(0))
                time.sleep(0.05)
        except KeyboardInterrupt:
            _kill_tree(proc, job, np)
            raise
        finally:
            if proc.poll() is None:
                _kill_tree(proc, job, np)
            reader.join(timeout=5)
        _kill_tree(proc, job, np, grace=1.0)  # nothing should be left; make sure of it
        return _collect(job, np, proc.returncode, out)


def _collect(job: _Job, np: int, returncode: int, out: _Output) -> list:
    """Each rank's result, or a WorkerError naming the first rank that failed and why."""
    for rank in range(np):
        if job.error(rank).exists():
            text = job.error(rank).read_text()
            reason = text.strip().splitlines()[-1] if text.strip() else "unknown error"
            raise WorkerError(f"rank {rank} failed: {reason}\n\n{text}", rank=rank, reason=reason,
                              output=out.tail(rank))
    for rank in range(np):
        if not job.result(rank).exists():
            started = job.pid(rank).exists()
            reason = ("exited before finishing (crashed or killed)" if started
                      else "never started")
            raise WorkerError(f"rank {rank} {reason}; horovodrun exit code {returncode}.\n"
                              f"Last output of rank {rank}:\n{out.tail(rank)}\nLauncher:\n{out.tail(None)}",
                              rank=rank, reason=reason, output=out.tail(rank))
    results = []
    for rank in range(np):
        with open(job.result(rank), "rb") as f:
            results.append(cloudpickle.load(f))
    return results


def _worker_main(job_dir: str) -> int:
    """Entry point of each worker process (``python -m labkit.launch JOB_DIR``)."""
    job = _Job(Path(job_dir))
    rank = int(os.environ.get("HOROVOD_RANK", "0"))
    job.pid(rank).write_text(str(os.getpid()))
    try:
        budget = ThreadBudget(int(os.environ.get("LABKIT_INTRA_OP", "1")), int(os.environ.get("LABKIT_INTER_OP", "1")))
        from labkit import distributed

        distributed.init(budget)
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
    sys.exit(_worker_main(sys.argv[1]))
