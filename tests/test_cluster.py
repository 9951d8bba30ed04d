"""labkit.cluster's hosts, links and shaping, with real namespaces, sshd and tc (root only)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from clusters import cluster, needs_root, unique_name
from labkit.cluster import netns, shape


def _root_namespace_view():
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "-o", "route"], capture_output=True, text=True).stdout
    return sorted(line.split(":")[1].strip() for line in links.splitlines()), routes


@needs_root
def test_hosts_are_namespaces_with_their_own_names_addresses_and_ssh():
    before = _root_namespace_view()
    with cluster("up", hosts=3) as c:
        assert c.names == ["h1", "h2", "h3"]
        for h in c.hosts:
            assert c.run(h.name, ["hostname"]).stdout.strip() == h.name
            assert h.address.startswith("10.210.") and h.ns.startswith(f"lk-{c.name}-")
            addrs = c.run(h.name, ["ip", "-4", "-o", "addr"]).stdout
            assert h.address in addrs and "eth0" in addrs
        # every host reaches every other by name over ssh, with no flags (the ssh config drop-in)
        assert c.run("h3", ["ssh", "h1", "hostname"]).stdout.strip() == "h1"
        assert c.run("h1", ["ssh", "h3", "cat", "/etc/hostname"]).stdout.strip() == "h3"
        # the job folder is on the one shared file system
        marker = f"/tmp/labkit-cluster-test-{os.getpid()}"
        c.run("h2", ["sh", "-c", f"echo shared > {marker}"])
        try:
            assert open(marker).read().strip() == "shared"
        finally:
            os.unlink(marker)
        # the root namespace got no interface and no route: the addresses exist only inside
        assert _root_namespace_view() == before
        assert c.subnet.rsplit(".", 2)[0] not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
        st = netns.status(c.name)
        assert st["up"] and [h["sshd"] for h in st["hosts"]] == [True] * 3
    assert _root_namespace_view() == before


@needs_root
def test_two_clusters_do_not_collide():
    with cluster("a") as a, cluster("b") as b:
        assert a.id != b.id and a.switch != b.switch
        assert {h.ns for h in a.hosts}.isdisjoint(h.ns for h in b.hosts)
        # each cluster's h1 is its own: ssh from a's h2 reaches a's h1
        assert a.run("h2", ["ssh", "h1", "cat", "/proc/self/net/dev"], check=True).returncode == 0
        assert a.host("h1").address != b.host("h1").address


@needs_root
def test_down_removes_everything_even_after_a_crash_and_is_idempotent():
    name = unique_name("crash")
    netns.down(name)
    c = netns.up(2, name=name)
    shape.shape(c, "100mbit")
    sleeper = subprocess.Popen(c.command("h2", ["sleep", "600"]))  # a process left running on a host
    # a "crash": the state file is gone and sshd was killed, as if the machine lost track
    os.kill(c.hosts[0].sshd_pid, signal.SIGKILL)
    (c.dir / "state.json").unlink()
    removed = netns.down(name)
    assert any("process" in r for r in removed)
    assert sleeper.wait(timeout=10) != 0
    assert netns.leftovers(name) == []
    assert netns.down(name) == []  # idempotent
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(f"lk-{name}-") == 0


@needs_root
def test_shaping_limits_goodput_in_both_directions_and_delay_needs_netem():
    with cluster("shape") as c:
        info = shape.shape(c, "100mbit")
        assert info["bandwidth_bps"] == 100e6
        qd = shape.qdiscs(c)
        assert all("tbf" in qd[k] and "100Mbit" in qd[k] for k in ("h1", "h2", "switch:p1", "switch:p2"))
        forward, back = shape.goodput(c, "h1", "h2", seconds=1.5), shape.goodput(c, "h2", "h1", seconds=1.5)
        for bits in (forward, back):  # TCP carries a little less than the token bucket's rate
            assert 0.80e8 <= bits <= 1.0e8, bits
        shape.shape(c, "10mbit")
        assert shape.goodput(c, "h1", "h2", seconds=1.5) <= 1.0e7
        shape.shape(c, None)
        assert all("tbf" not in q for q in shape.qdiscs(c).values())
        if shape.has_netem():
            shape.shape(c, "100mbit", delay="5ms")
            rtt = c.run("h1", ["ping", "-c", "3", "-q", "h2"], check=False).stdout
            assert "rtt" in rtt
        else:
            with pytest.raises(shape.NetemMissing, match="no netem"):
                shape.shape(c, "100mbit", delay="5ms")


def test_rates_and_delays_parse_like_tc():
    assert shape.parse_rate("100mbit") == 1e8 and shape.parse_rate("1gbit") == 1e9
    assert shape.parse_rate("unlimited") is None and shape.parse_rate(5e6) == 5e6
    assert shape.parse_delay("5ms") == 0.005 and shape.parse_delay("200us") == pytest.approx(2e-4)
    assert shape.rate_label(1e8) == "100 Mbit/s" and shape.rate_label(None) == "unshaped"
    with pytest.raises(ValueError, match="not a rate"):
        shape.parse_rate("fast")


def _as_nobody(argv):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
                          capture_output=True, text=True, env={**os.environ, "HOME": "/tmp"})


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what a non-root user sees, by dropping root")
def test_without_root_the_verbs_say_so():
    probe = _as_nobody([sys.executable, "-c", "import labkit"])
    if probe.returncode != 0:
        pytest.skip(f"an unprivileged user can't run this checkout's Python here: {probe.stderr.strip()[-200:]}")
    res = _as_nobody([sys.executable, "-m", "labkit", "cluster", "up", "--hosts", "2", "--name", "nobodytest"])
    assert res.returncode == 2
    assert "needs root" in res.stderr
    res = _as_nobody([sys.executable, "-m", "labkit", "cluster", "status", "--json", "--name", "nobodytest"])
    assert res.returncode in (0, 1), res.stderr


@needs_root
def test_cli_up_status_shape_down(tmp_path):
    name = unique_name("cli")
    lab = [sys.executable, "-m", "labkit", "cluster"]
    try:
        res = subprocess.run([*lab, "up", "--hosts", "2", "--name", name, "--json"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        st = json.loads(res.stdout.strip().splitlines()[-1])
        assert [h["name"] for h in st["hosts"]] == ["h1", "h2"]
        res = subprocess.run([*lab, "shape", "--name", name, "--bandwidth", "1gbit", "--json"], capture_output=True, text=True)
        assert json.loads(res.stdout)["bandwidth_bps"] == 1e9
        res = subprocess.run([*lab, "status", "--name", name], capture_output=True, text=True)
        assert "1 Gbit/s" in res.stdout and "h2" in res.stdout
    finally:
        res = subprocess.run([*lab, "down", "--name", name], capture_output=True, text=True)
    assert "namespace" in res.stdout
    assert netns.leftovers(name) == []
