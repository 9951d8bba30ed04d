"""Shared by the cluster tests: a skip reason without root, and a cluster that is always removed."""
import contextlib
import os

import pytest

from labkit.cluster import netns

REASON = netns.root_problem()
needs_root = pytest.mark.skipif(REASON is not None, reason=f"the namespaced cluster needs root: {REASON}")


def unique_name(tag: str) -> str:
    """A cluster name no other test run (or person) on this machine is using: tag + pid."""
    return f"t{tag}{os.getpid() % 100000}"


@contextlib.contextmanager
def cluster(tag: str, hosts: int = 2, **kwargs):
    """A fresh cluster for a test; removed afterwards even if the test fails, and checked gone."""
    name = unique_name(tag)
    netns.down(name)
    before = os.environ.get("LABKIT_CLUSTER")
    os.environ["LABKIT_CLUSTER"] = name  # host names (h1, ...) mean this cluster's, whatever else is up
    try:
        yield netns.up(hosts, name=name, **kwargs)
    finally:
        if before is None:
            os.environ.pop("LABKIT_CLUSTER", None)
        else:
            os.environ["LABKIT_CLUSTER"] = before
        netns.down(name)
        assert not netns.leftovers(name), f"cluster {name} left {netns.leftovers(name)}"
