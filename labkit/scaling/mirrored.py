"""The alternative a TensorFlow user would pick: ``tf.distribute.MultiWorkerMirroredStrategy``.

The same models, data, loop and timing as the Horovod runs (:mod:`labkit.scaling.workload`),
so that the two land in the same results table (``mode == "mirrored"``). Each worker is a plain
process started by :func:`labkit.launch.run_local` with its own ``TF_CONFIG``::

    {"cluster": {"worker": ["localhost:PORT0", "localhost:PORT1"]}, "task": {"type": "worker", "index": i}}

Differences from the Horovod path, which a student should know:

- variables are created in ``strategy.scope()`` and start identical on every worker (the
  strategy broadcasts them); Horovod needs an explicit broadcast;
- the Keras optimizer *sums* gradients across replicas, and Keras 3 losses divide themselves by
  the number of replicas inside a strategy's replica context, so the sum is the average;
  Horovod averages explicitly. (labkit reports the unscaled loss, to compare like with like);
- the allreduce is TensorFlow's collective ops over gRPC (``CommunicationImplementation.RING``),
  not Gloo.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

from labkit import launch
from labkit.scaling.workload import RunSpec, TrialRecord, _Comm, train_trials
from labkit.threads import ThreadBudget


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on localhost right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("localhost", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` in a localhost cluster on ``ports``."""
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


@dataclass
class _MirroredComm(_Comm):
    """The collectives of a MultiWorkerMirroredStrategy (one replica per worker process)."""

    strategy: object = None

    def average_gradients(self, grads):
        return grads  # the Keras optimizer all-reduces (sums) under the strategy; the loss is pre-scaled

    def broadcast(self, model, optimizer):
        pass  # variables created in the strategy's scope are already identical

    def scope(self):
        return self.strategy.scope()

    def compile_step(self, step):
        import tensorflow as tf

        strategy, size = self.strategy, self.size

        @tf.function
        def distributed(xb, yb):
            loss, acc = strategy.run(step, args=(xb, yb))
            # Keras scaled the loss by 1/replicas (see the module docstring): undo it for reporting
            return (strategy.experimental_local_results(loss)[0] * size,
                    strategy.experimental_local_results(acc)[0])

        return distributed

    def mean(self, values):
        import tensorflow as tf

        strategy = self.strategy
        out = strategy.run(lambda: tf.constant(values, tf.float32))
        return [float(v) for v in strategy.reduce(tf.distribute.ReduceOp.MEAN, out, axis=None).numpy()]


def mirrored_job(specs: list[RunSpec], trials: int, show_progress: bool = True) -> dict:
    """What each MultiWorkerMirroredStrategy worker runs (reads ``TF_CONFIG``)."""
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    ctx = strategy.cluster_resolver.task_id, strategy.num_replicas_in_sync
    comm = _MirroredComm(rank=ctx[0], size=ctx[1], horovod=False, strategy=strategy)
    records = train_trials(specs, trials, comm, show_progress)
    return {"rank": comm.rank, "records": records, "pid": os.getpid()}


def run_mirrored(specs: list[RunSpec], trials: int = 1, workers: int = 2, threads: int = 1,
                 timeout: float = 600, echo: bool = True) -> list[TrialRecord]:
    """Run ``specs`` under MultiWorkerMirroredStrategy on ``workers`` local processes; return
    rank 0's records (as :func:`labkit.scaling.workload.train_trials` makes them)."""
    ports = free_ports(workers)
    out = launch.run_local(mirrored_job, specs, trials, echo, np=workers, threads=ThreadBudget(threads, 1),
                           timeout=timeout, echo=echo,
                           rank_env=lambda r: {"TF_CONFIG": tf_config(ports, r)})
    return out[0]["records"]
