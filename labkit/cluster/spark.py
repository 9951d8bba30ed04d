"""A real Spark session for the lab, in local mode or on a standalone cluster, with its start-up
timed.

- :func:`session` -- build (or rebuild) the session: ``master="local[2]"`` runs Spark inside one
  JVM with 2 worker threads; ``master="spark://host:7077"`` uses a standalone cluster, with
  ``cores`` capping how many of its cores this application takes. The web UI is off (no port to
  clash with other users), shuffles use a few partitions (the default 200 is made for clusters,
  and costs seconds on small data), and executors run this very Python (``sys.executable``).
- :func:`timed_session` -- the same, and how many seconds it took (JVM start, context start).
- :func:`describe` -- what a session runs on: master, version, parallelism.
- :func:`stop` -- stop the session (the JVM stays up: a new session in the same process is quick).
- :func:`shutdown` -- stop the session and end the JVM too (tests, scripts that must leave no process).

The driver's JVM logs errors only (``log4j2.properties`` next to this file) and JIT-compiles with
the quick C1 compiler (:data:`JAVA_OPTIONS`), which suits short teaching jobs on small machines.

The notebooks pass only absolute paths to Spark, so the same code runs on a cluster whose
executors share this machine's file system.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

#: Errors only from Spark's JVM: the notebooks show results, not start-up chatter.
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
#: JVM options for the driver (and executors): log quietly, and JIT-compile with the fast C1
#: compiler only. The lab's jobs are short, and on 2 cores the optimising C2 compiler's work
#: competes with the job for the cores (one trial on a heavily loaded machine: session start
#: 72 → 16 s, first ETL 18 → 14 s, first fit 20 → 12 s; ``bench/spark_startup.py`` measures it side
#: by side). Pass ``conf={"spark.driver.extraJavaOptions": ...}`` to change them for long jobs.
JAVA_OPTIONS = f"-XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=file:{LOG_CONFIG}"


def _master_for(master: str, cores: int | None) -> str:
    if master.startswith("local") and cores:
        return f"local[{cores}]"
    return master


def session(master: str = "local[2]", cores: int | None = None, memory: str = "1g",
            app_name: str = "labkit", conf: dict | None = None, shuffle_partitions: int | None = None,
            log_level: str = "ERROR"):
    """A ``SparkSession`` on ``master``; any session already running in this process is stopped
    first, so the settings given here are the ones in force.

    - ``cores``: for ``local`` masters, the number of worker threads (``local[cores]``); for a
      cluster, the most cores this application may take (``spark.cores.max``).
    - ``memory``: driver and executor memory (``"1g"``). The driver's only applies when the JVM
      starts, i.e. on the first session of a process.
    - ``conf``: any other Spark settings, applied last.
    - ``shuffle_partitions``: ``spark.sql.shuffle.partitions`` (default: twice the cores, at
      least 2).
    """
    import warnings

    from pyspark.sql import SparkSession

    # pyspark 4.3 warns on import paths that it "does not yet fully support pandas >= 3"; the lab
    # moves data between Spark and Python with collect(), not pandas conversions, so it is noise.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    real_master = _master_for(master, cores)
    if real_master.startswith("local"):
        # one process: bind to loopback (no "hostname resolves to a loopback address" warning)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    parallel = cores or _cores_in(real_master) or 2
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": memory,
        "spark.executor.memory": memory,
        "spark.sql.shuffle.partitions": str(shuffle_partitions or max(2, 2 * parallel)),
        "spark.pyspark.python": sys.executable,
        "spark.driver.extraJavaOptions": JAVA_OPTIONS,
        "spark.executor.extraJavaOptions": JAVA_OPTIONS,
    }
    if not real_master.startswith("local") and cores:
        settings["spark.cores.max"] = str(cores)
    settings.update(conf or {})
    builder = SparkSession.builder.master(real_master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    return spark


def _cores_in(master: str) -> int | None:
    if master.startswith("local[") and master.endswith("]"):
        inner = master[6:-1]
        if inner == "*":
            return os.cpu_count()
        try:
            return int(inner.split(",")[0])
        except ValueError:
            return None
    if master == "local":
        return 1
    return None


def timed_session(**kwargs):
    """``(spark, seconds)``: :func:`session` and the wall time it took. The first session of a
    process pays for starting the JVM; later ones reuse it."""
    start = time.perf_counter()
    spark = session(**kwargs)
    spark.range(1).count()  # the context is only really up once it has run something
    return spark, time.perf_counter() - start


def describe(spark) -> dict:
    """``{master, version, default_parallelism, app_id, shuffle_partitions}`` of a session."""
    sc = spark.sparkContext
    return {"master": sc.master, "version": spark.version, "default_parallelism": sc.defaultParallelism,
            "app_id": sc.applicationId, "shuffle_partitions": int(spark.conf.get("spark.sql.shuffle.partitions"))}


def stop(spark) -> None:
    """Stop ``spark`` (its executors and context). Safe to call twice."""
    try:
        spark.stop()
    except Exception:  # noqa: BLE001 -- already stopped, or the JVM is gone
        pass


def shutdown(timeout: float = 20.0) -> None:
    """Stop any active session and end this process's Spark JVM (the py4j gateway). Without it
    the JVM lives until Python exits; after it, a new :func:`session` starts a fresh JVM."""
    import subprocess

    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:
        stop(SparkContext._active_spark_context)
    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    try:
        gateway.shutdown()
    except Exception:  # noqa: BLE001 -- the JVM may be gone already
        pass
    if proc is not None:
        if proc.stdin:
            proc.stdin.close()  # the JVM ends when its parent's pipe closes
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None
