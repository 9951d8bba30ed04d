"""labkit.cluster: a cluster on one machine, and the engines that run on it.

- :mod:`~labkit.cluster.netns`            -- N hosts as network namespaces (up, down, status)
- :mod:`~labkit.cluster.shape`            -- the links' bandwidth and delay (``tc``), and goodput
- :mod:`~labkit.cluster.network`          -- the network lesson: efficiency against link shape
- :mod:`~labkit.cluster.spark`            -- a Spark session, local or on a standalone master
- :mod:`~labkit.cluster.spark_standalone` -- a Spark standalone master and workers in the hosts
- :mod:`~labkit.cluster.horovod_spark`    -- Horovod training driven by Spark (``horovod.spark.run``)
- :mod:`~labkit.cluster.training`         -- a small training job any launcher can run
- :mod:`~labkit.cluster.cli`              -- ``labkit cluster up|down|shape|status|spark``

Everything that builds a cluster needs root; :func:`root_problem` says why not, when not.
Multi-host Horovod itself is :func:`labkit.launch.run` with the cluster's host names.
Submodules are imported on use, so importing this package starts no JVM and imports no pyspark
or TensorFlow (:mod:`~labkit.cluster.netns` needs only the standard library).
"""
import importlib as _importlib

from labkit.cluster.netns import Cluster, ClusterError, current, down, root_problem, status, up

__all__ = ["Cluster", "ClusterError", "current", "down", "root_problem", "status", "up"]
_SUBMODULES = ("spark", "spark_standalone", "horovod_spark", "network", "shape", "training", "netns", "cli")


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
