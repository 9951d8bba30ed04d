"""Thread budgets: how many CPU threads each worker process may use.

Kept free of TensorFlow imports so that launchers can plan budgets cheaply;
:func:`labkit.distributed.configure_threads` applies one inside a TF process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from labkit.doctor import usable_cores


@dataclass(frozen=True)
class ThreadBudget:
    """How many threads one worker may use: TF intra-op, TF inter-op (and OpenMP = intra)."""

    intra_op: int
    inter_op: int = 1

    def env(self) -> dict[str, str]:
        """Environment variables that apply this budget to a process started with them."""
        return {
            "OMP_NUM_THREADS": str(self.intra_op),
            "TF_NUM_INTRAOP_THREADS": str(self.intra_op),
            "TF_NUM_INTEROP_THREADS": str(self.inter_op),
        }


def thread_budget(workers: int, cores: int | None = None) -> ThreadBudget:
    """Split ``cores`` (default: the usable cores) fairly between ``workers`` processes.

    Each worker gets ``cores // workers`` intra-op threads (at least 1) and one inter-op thread,
    so that workers don't fight each other and Horovod's background thread for the same cores.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    cores = usable_cores() if cores is None else cores
    return ThreadBudget(intra_op=max(1, cores // workers), inter_op=1)


def as_budget(threads: ThreadBudget | int | None, workers: int) -> ThreadBudget:
    """The budget a caller's ``threads`` argument means: None, a fair share of the cores among
    ``workers`` local workers; an int, that many intra-op threads; a ThreadBudget, itself."""
    if threads is None:
        return thread_budget(workers)
    if isinstance(threads, int):
        return ThreadBudget(intra_op=threads)
    return threads


def pin_to_cores(local_rank: int, threads: int) -> list[int] | None:
    """Pin this process (and the threads it starts from now on) to its own slice of cores.

    Worker ``local_rank`` gets cores ``[local_rank * threads, (local_rank + 1) * threads)`` of the
    ones this process may use. Without pinning, the OS moves workers between cores and two of them
    sometimes share one while the other idles; on the 2-core reference machine pinning 2 workers
    of 1 thread each gained about 3 points of scale-out efficiency (bench/scaling.py). Returns the
    cores, or None (and pins nothing) when the slices don't fit, e.g. more workers than cores.
    """
    allowed = sorted(os.sched_getaffinity(0))
    start = local_rank * threads
    if threads < 1 or start + threads > len(allowed):
        return None
    mine = allowed[start:start + threads]
    os.sched_setaffinity(0, mine)
    return mine
