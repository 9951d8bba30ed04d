"""Shape a cluster's links with ``tc``: bandwidth (``tbf``) in both directions, delay (``netem``).

    shape(cluster, bandwidth="100mbit")            # every host's link: 100 Mbit/s each way
    shape(cluster, bandwidth="1gbit", delay="5ms")  # + 5 ms one-way delay, where netem exists
    shape(cluster, None)                           # back to the unshaped veth (no qdisc)
    goodput(cluster, "h1", "h2")                   # what TCP really carries (iperf3), bit/s

Where the qdiscs go: a packet from h1 to h2 leaves h1's ``eth0`` (h1's uplink) and then the
switch's port towards h2 (h2's downlink). A token bucket (``tbf``) on both makes each host's link
``bandwidth`` in each direction, like a switched network of full-duplex links.

Delay needs the ``netem`` qdisc, a kernel module. Where the kernel lacks it (``tc`` says
"Specified qdisc kind is unknown", as on the machine labkit was built on), ``--delay`` raises
:class:`NetemMissing` and nothing is changed: latency can't be emulated there, only predicted.
netem delays each host's uplink, so the one-way delay between two hosts is ``delay`` and the
round trip is twice that.

TCP goodput is below the tbf rate (headers, ACKs, the bucket's bursts): iperf3 measured 0.89–0.95
of it here. :func:`goodput` measures it, so the model can be given what the network really does.
"""
from __future__ import annotations

import json
import re
import subprocess
import time

from labkit.cluster.netns import Cluster, ClusterError

_UNITS = {"": 1, "bit": 1, "k": 1e3, "kbit": 1e3, "m": 1e6, "mbit": 1e6, "g": 1e9, "gbit": 1e9, "t": 1e12, "tbit": 1e12}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


class NetemMissing(ClusterError):
    """The kernel has no netem qdisc, so delay (latency) can't be emulated."""


def parse_rate(text: str | float | None) -> float | None:
    """``"100mbit"`` -> 1e8 bits per second (tc's decimal units); None/"none"/"unlimited" -> None."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    if t in ("", "none", "unlimited", "unshaped", "off"):
        return None
    m = re.fullmatch(r"([0-9.]+)\s*([a-z]*?)(?:bps|bit/s)?", t)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"not a rate: {text!r} (examples: 10mbit, 100mbit, 1gbit)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_delay(text: str | float | None) -> float | None:
    """``"5ms"`` -> 0.005 seconds; None/"0" -> None."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text) or None
    m = re.fullmatch(r"([0-9.]+)\s*(s|ms|us)?", text.strip().lower())
    if not m:
        raise ValueError(f"not a delay: {text!r} (examples: 1ms, 5ms, 200us)")
    value = float(m.group(1)) * _TIME[m.group(2) or "ms"]
    return value or None


def rate_label(bits_per_second: float | None) -> str:
    """1e8 -> "100 Mbit/s"; None -> "unshaped"."""
    if bits_per_second is None:
        return "unshaped"
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:g} {unit}"
    return f"{bits_per_second:g} bit/s"


def has_netem() -> bool:
    """Whether this kernel can emulate delay (tries a netem qdisc in a throwaway namespace)."""
    ns = f"lk-netemprobe{__import__('os').getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        res = subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                             capture_output=True, text=True)
        return res.returncode == 0
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _tc(ns: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["tc", "-n", ns, *map(str, args)], capture_output=True, text=True)


def _tbf(bits: float) -> list[str]:
    # The bucket must hold at least one timer tick's worth of data at the rate (and a few
    # full-size segments); 50 ms of queue is like a switch port's buffer.
    burst = max(32 * 1024, int(bits / 8 / 250))
    return ["tbf", "rate", f"{int(bits)}bit", "burst", str(burst), "latency", "50ms"]


def shape(cluster: Cluster, bandwidth: str | float | None = None, delay: str | float | None = None) -> dict:
    """Give every host's link ``bandwidth`` (each direction) and ``delay`` (one way); None clears.

    Returns the shape recorded in the cluster's state: ``{"bandwidth_bps", "delay_s", "label"}``.
    """
    bits, seconds = parse_rate(bandwidth), parse_delay(delay)
    if seconds and not has_netem():
        raise NetemMissing(
            "this kernel has no netem qdisc ('tc qdisc ... netem' says 'Specified qdisc kind is unknown'), "
            "so --delay can't be emulated here; bandwidth shaping (tbf) works. On a kernel with "
            "sch_netem (most distributions: modprobe sch_netem) the same command adds the delay.")
    for h in cluster.hosts:
        for ns, dev in ((h.ns, "eth0"), (cluster.switch, h.port)):
            _tc(ns, "qdisc", "del", "dev", dev, "root")  # may not exist: fine
            if seconds and dev == "eth0":
                cmd = ["qdisc", "add", "dev", dev, "root", "handle", "1:", "netem", "delay", f"{seconds * 1e6:.0f}us"]
                if bits:
                    cmd += ["rate", f"{int(bits)}bit"]
            elif bits:
                cmd = ["qdisc", "add", "dev", dev, "root", "handle", "1:", *_tbf(bits)]
            else:
                continue
            res = _tc(ns, *cmd)
            if res.returncode != 0:
                raise ClusterError(f"tc {' '.join(cmd)} on {dev} failed: {res.stderr.strip()}")
    cluster.shape = {"bandwidth_bps": bits, "delay_s": seconds,
                     "label": rate_label(bits) + (f", {seconds * 1e3:g} ms one way" if seconds else "")}
    cluster.save()
    return cluster.shape


def qdiscs(cluster: Cluster) -> dict[str, str]:
    """What ``tc qdisc show`` says for each host's link (both ends)."""
    out = {}
    for h in cluster.hosts:
        out[h.name] = _tc(h.ns, "qdisc", "show", "dev", "eth0").stdout.strip()
        out[f"switch:{h.port}"] = _tc(cluster.switch, "qdisc", "show", "dev", h.port).stdout.strip()
    return out


def goodput(cluster: Cluster, sender: str = "h1", receiver: str = "h2", seconds: float = 2.0,
            port: int = 5201, both_ways: bool = False) -> float:
    """TCP goodput from ``sender`` to ``receiver`` in bits per second, measured with iperf3.

    ``both_ways=True`` loads both directions at once (``iperf3 --bidir``) and returns the mean of
    the two: what each direction carries while a ring allreduce sends and receives together (the
    other direction's acknowledgements share the link; about 2.5 % less at 100 Mbit/s here).
    """
    server = subprocess.Popen(cluster.command(receiver, ["iperf3", "-s", "-1", "-p", port]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            res = cluster.run(sender, ["iperf3", "-c", receiver, "-p", port, "-t", f"{seconds:g}", "-J",
                                       *(["--bidir"] if both_ways else [])], check=False, timeout=seconds + 30)
            try:
                end = json.loads(res.stdout)["end"]
                forward = float(end["sum_received"]["bits_per_second"])
                if both_ways:
                    return (forward + float(end["sum_received_bidir_reverse"]["bits_per_second"])) / 2
                return forward
            except (ValueError, KeyError, TypeError):
                if time.monotonic() > deadline:
                    raise ClusterError(f"iperf3 from {sender} to {receiver} failed: "
                                       f"{res.stdout[-500:]} {res.stderr[-500:]}") from None
            time.sleep(0.2)  # the server was not listening yet
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
