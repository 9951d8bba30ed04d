"""Spark standalone in the cluster's hosts: a master on the first host, a worker on every host.

    info = start(cluster)        # {"master": "spark://h1:7077", "ui": "http://h1:8080", ...}
    stop(cluster)                # `labkit cluster down` stops them too

The pyspark package from PyPI bundles Spark's jars with ``bin/spark-class`` and
``sbin/spark-daemon.sh`` (but not ``start-master.sh``/``start-worker.sh``), so the daemons are
started the way those scripts would, through ``spark-daemon.sh``, inside each host (its network,
hostname and /etc). Nothing is downloaded. Java 17 runs them.

A Spark *driver* (a SparkSession, ``spark-submit``, :mod:`labkit.cluster.horovod_spark`) must be
reachable by the executors, so it runs inside the cluster too: on a host, with
``cluster.command("h1", [...])``. That is also how a real cluster works, where the driver runs
on a cluster node or an edge node of the cluster's network.

Sizes are kept small for a shared 2-core machine: each daemon gets 512 MB of heap, each worker
offers ``cores`` core(s) and ``memory`` to executors (defaults: 1 core, 1536 MB).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from labkit.cluster.netns import Cluster, ClusterError

MASTER_PORT = 7077
UI_PORT = 8080


def spark_home() -> Path:
    """The Spark bundled inside the installed pyspark package."""
    try:
        import pyspark
    except ImportError:
        raise ClusterError("pyspark is not installed: run 'make setup'") from None
    home = Path(pyspark.__file__).parent
    if not (home / "sbin" / "spark-daemon.sh").exists():
        raise ClusterError(f"{home} has no sbin/spark-daemon.sh: the pyspark package looks incomplete")
    return home


def daemon_env(cluster: Cluster) -> dict:
    """Environment for Spark daemons (and the executors they start) on the cluster's hosts."""
    folder = cluster.dir / "spark"
    return {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOG_DIR": str(folder / "logs"),
            "SPARK_PID_DIR": str(folder / "pids"), "SPARK_IDENT_STRING": f"labkit-{cluster.name}",
            "SPARK_DAEMON_MEMORY": "512m", "SPARK_NO_DAEMONIZE": "", "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable, "JAVA_TOOL_OPTIONS": "-XX:+UseSerialGC",
            "SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=true"}


def _daemon(cluster: Cluster, host: str, action: str, cls: str, instance: int, *args) -> None:
    script = spark_home() / "sbin" / "spark-daemon.sh"
    env = {k: v for k, v in daemon_env(cluster).items() if v != ""}
    res = cluster.run(host, ["bash", script, action, cls, instance, *args], check=False, env=env, timeout=60)
    if res.returncode != 0 and action == "start":
        raise ClusterError(f"spark-daemon.sh start {cls} on {host} failed: {res.stdout[-1000:]} {res.stderr[-1000:]}")


def _pid(cluster: Cluster, cls: str, instance: int) -> int | None:
    path = cluster.dir / "spark" / "pids" / f"spark-labkit-{cluster.name}-{cls}-{instance}.pid"
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def master_status(cluster: Cluster) -> dict:
    """The master's own view (its web UI's ``/json/``): alive workers, cores, running apps."""
    master = cluster.spark.get("master_host", cluster.hosts[0].name)
    code = ("import json, urllib.request; "
            f"print(urllib.request.urlopen('http://{master}:{UI_PORT}/json/', timeout=5).read().decode())")
    res = cluster.run(master, [sys.executable, "-c", code], check=False, timeout=30)
    try:
        return json.loads(res.stdout)
    except ValueError:
        return {}


def start(cluster: Cluster, cores: int = 1, memory: str = "1536m", timeout: float = 90) -> dict:
    """Start a master on the first host and a worker on every host; wait until all registered."""
    if cluster.spark.get("master") and master_status(cluster).get("status") == "ALIVE":
        return cluster.spark
    master_host = cluster.hosts[0].name
    url = f"spark://{master_host}:{MASTER_PORT}"
    (cluster.dir / "spark" / "work").mkdir(parents=True, exist_ok=True)
    master_cls = "org.apache.spark.deploy.master.Master"
    worker_cls = "org.apache.spark.deploy.worker.Worker"
    _daemon(cluster, master_host, "start", master_cls, 1,
            "--host", master_host, "--port", MASTER_PORT, "--webui-port", UI_PORT)
    for i, h in enumerate(cluster.hosts, start=1):
        _daemon(cluster, h.name, "start", worker_cls, i, url, "--host", h.name, "--cores", cores,
                "--memory", memory, "--webui-port", 8081, "--work-dir", cluster.dir / "spark" / "work" / h.name)
    cluster.spark = {"master": url, "master_host": master_host, "ui": f"http://{master_host}:{UI_PORT}",
                     "workers": cluster.names, "cores_per_worker": cores, "memory_per_worker": memory,
                     "pids": {master_host: [_pid(cluster, master_cls, 1)]}}
    for i, h in enumerate(cluster.hosts, start=1):
        cluster.spark["pids"].setdefault(h.name, []).append(_pid(cluster, worker_cls, i))
    cluster.save()
    deadline = time.monotonic() + timeout
    while True:
        st = master_status(cluster)
        alive = [w for w in st.get("workers", []) if w.get("state") == "ALIVE"]
        if st.get("status") == "ALIVE" and len(alive) >= len(cluster.hosts):
            return cluster.spark
        if time.monotonic() > deadline:
            logs = sorted((cluster.dir / "spark" / "logs").glob("*.out"))
            tail = "\n".join(f"{p.name}: {p.read_text()[-800:]}" for p in logs)
            raise ClusterError(f"Spark did not come up in {timeout:g} s ({len(alive)} of {len(cluster.hosts)} "
                               f"workers registered).\n{tail}")
        time.sleep(0.5)


def stop(cluster: Cluster) -> None:
    """Stop the workers and the master (``spark-daemon.sh stop``), and forget them."""
    if not cluster.spark:
        return
    for i, h in enumerate(cluster.hosts, start=1):
        _daemon(cluster, h.name, "stop", "org.apache.spark.deploy.worker.Worker", i)
    _daemon(cluster, cluster.spark["master_host"], "stop", "org.apache.spark.deploy.master.Master", 1)
    cluster.spark = {}
    cluster.save()
