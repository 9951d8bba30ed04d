"""Clusters for the lab: Spark sessions now; the namespaced test cluster builds on them.

- ``labkit.cluster.spark`` -- start a real Spark session (local mode or a standalone master),
  timed, with the UI off and nothing that only works in local mode.

Submodules are imported on use (``from labkit.cluster import spark``), so importing this package
starts no JVM and imports no pyspark.
"""
import importlib as _importlib


def __getattr__(name):
    if name in ("spark",):
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
