"""Horovod training driven by Spark (``horovod.spark.run``), with :func:`labkit.launch.run`'s manners.

    from labkit.cluster import horovod_spark
    weights = horovod_spark.run(train, np=2, master="spark://h1:7077")   # the cluster's Spark
    weights = horovod_spark.run(train, np=2, master="local[2]")          # Spark inside one process

Spark is the engine here: it schedules ``np`` tasks on its executors, and Horovod turns them into
one Gloo job (``horovod.spark.run``). labkit adds what :func:`labkit.launch.run` gives:

- ``fn`` (a notebook function is fine) runs on every rank after :func:`labkit.distributed.init`
  with an explicit thread budget, so the same ``labkit.distributed`` glue trains Keras 3 models;
- rank 0's output streams, :func:`labkit.launch.progress` drives a progress bar, and a wall-clock
  ``timeout`` covers the whole job, Spark's start-up included;
- on a crash, a timeout or an interrupt, the driver (and with it the Spark application) and
  every worker are stopped, and :class:`labkit.launch.WorkerError` names the rank and the reason.

How: the Spark *driver* is a child process (``python -m labkit.cluster.horovod_spark JOB``), so
that it can be stopped as a whole. For a master of a running :mod:`labkit.cluster`, the driver
runs on the cluster's first host, where the executors can reach it. The job folder that carries
``fn`` and the results is on the file system every host shares.

Measured on the 2-core machine (issue 17's feasibility run): 25–46 s per call, about 20 s of it
Horovod-on-Spark's own start-up; ``horovod.spark.keras.KerasEstimator`` does not work on this
stack (petastorm needs ``pyarrow.filesystem``; Keras 3 lacks ``.ref()``) and is not offered.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import cloudpickle

from labkit import launch
from labkit.threads import ThreadBudget, as_budget


def _cluster_for(master: str):
    """The running labkit cluster (``$LABKIT_CLUSTER``'s, or the only one) whose Spark master is
    ``master``, or None."""
    if not master.startswith("spark://"):
        return None
    from labkit.cluster import netns

    try:
        c = netns.current()
    except netns.ClusterError:
        return None
    return c if c is not None and c.spark.get("master") == master else None


def run(fn, *args, np: int = 2, master: str = "local[2]", threads: ThreadBudget | int | None = None,
        timeout: float = 600, env: dict | None = None, echo: bool = True, progress_bar: bool = True,
        spark_conf: dict | None = None, job_root: str | None = None, cluster=None, **kwargs) -> list:
    """Run ``fn(*args, **kwargs)`` on ``np`` Horovod ranks scheduled by Spark; return each rank's result.

    - ``master``: a Spark master URL: ``local[N]`` (N ≥ np), ``spark://h1:7077`` (the labkit
      cluster's, see ``labkit cluster up --spark``) or a real cluster's.
    - ``threads``: per-rank budget (default: this machine's cores shared among the ``np`` ranks,
      since local and namespaced executors share them).
    - ``spark_conf``: extra Spark settings for the driver's session.
    - ``cluster``: the :class:`labkit.cluster.Cluster` that runs ``master`` (default: the running
      one whose Spark master it is); the driver then runs on its master's host.
    - the rest as in :func:`labkit.launch.run`.
    """
    if np < 1:
        raise ValueError(f"np must be at least 1, got {np}")
    cluster = cluster if cluster is not None else _cluster_for(master)
    budget = as_budget(threads, np)
    with tempfile.TemporaryDirectory(prefix="labkit-hvdspark-", dir=job_root) as tmp:
        job = launch._Job(Path(tmp))
        with open(job.payload(), "wb") as f:
            cloudpickle.dump((fn, args, kwargs), f)
        (job.dir / "spark.pkl").write_bytes(cloudpickle.dumps({"master": master, "np": np, "timeout": timeout,
                                                               "conf": dict(spark_conf or {})}))
        cmd = [sys.executable, "-m", "labkit.cluster.horovod_spark", str(job.dir)]
        if cluster is not None:
            cmd = cluster.command(cluster.spark.get("master_host", cluster.hosts[0].name), cmd)
        out = launch._Output(echo=echo, show_progress=progress_bar)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=launch._base_env(budget, env), start_new_session=True, bufsize=1)
        reader = threading.Thread(target=lambda: [out.feed(line.rstrip("\n")) for line in proc.stdout], daemon=True)
        reader.start()
        launch._supervise([proc], job, np, timeout, out, [reader], stop_on_failure=False)
        if proc.returncode != 0 and not any(job.error(r).exists() for r in range(np)):
            # Spark or Horovod failed before any rank ran: say so with the driver's own words
            if not any(job.result(r).exists() for r in range(np)):
                raise launch.WorkerError(f"the Spark driver failed (exit code {proc.returncode}) before the "
                                         f"ranks ran.\nDriver output:\n{out.tail(None)}",
                                         reason=f"driver exit code {proc.returncode}", output=out.tail(None))
        return launch._collect(job, np, out, f"Spark driver exit code {proc.returncode}")


# --------------------------------------------------------------------------------------------
# The driver process and the function each rank runs
# --------------------------------------------------------------------------------------------
def _rank_main(job_dir: str) -> int:
    """What every Horovod rank runs inside a Spark task: labkit's worker (init, budget, fn, result)."""
    from labkit import launch as _launch

    code = _launch._worker_main(job_dir)
    if code != 0:  # make Horovod stop the other ranks, as horovodrun does
        raise RuntimeError(f"labkit rank failed (see {job_dir})")
    return code


def _driver_main(job_dir: str) -> int:
    """``python -m labkit.cluster.horovod_spark JOB``: a Spark session, then ``horovod.spark.run``."""
    settings = cloudpickle.loads((Path(job_dir) / "spark.pkl").read_bytes())
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(settings["master"]).appName("labkit-horovod")
               .config("spark.pyspark.python", sys.executable)
               .config("spark.executor.memory", "1g").config("spark.task.cpus", "1")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.executorEnv.PYTHONPATH", os.environ.get("PYTHONPATH", "")))
    for key, value in settings["conf"].items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        import horovod.spark

        horovod.spark.run(_rank_main, args=(job_dir,), num_proc=settings["np"], env=dict(os.environ),
                          stdout=sys.stdout, stderr=sys.stdout, verbose=0, use_gloo=True,
                          start_timeout=max(30, int(settings["timeout"])), executable=sys.executable)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_driver_main(sys.argv[1]))
