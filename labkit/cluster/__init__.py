"""labkit.cluster: a cluster on one machine, and the engines that run on it.

- :mod:`~labkit.cluster.netns`            -- N hosts as network namespaces (up, down, status)
- :mod:`~labkit.cluster.shape`            -- the links' bandwidth and delay (``tc``), and goodput
- :mod:`~labkit.cluster.network`          -- the network lesson: efficiency against link shape
- :mod:`~labkit.cluster.spark_standalone` -- a Spark standalone master and workers in the hosts
- :mod:`~labkit.cluster.horovod_spark`    -- Horovod training driven by Spark (``horovod.spark.run``)
- :mod:`~labkit.cluster.cli`              -- ``labkit cluster up|down|shape|status|spark``

Everything that builds a cluster needs root; :func:`root_problem` says why not, when not.
Multi-host Horovod itself is :func:`labkit.launch.run` with the cluster's host names.
"""
from labkit.cluster.netns import Cluster, ClusterError, current, down, root_problem, status, up

__all__ = ["Cluster", "ClusterError", "current", "down", "root_problem", "status", "up"]
