"""``labkit cluster``: a test cluster on this machine (a thin layer over :mod:`labkit.cluster`).

    labkit cluster up --hosts 2 [--spark]     # hosts h1, h2 as network namespaces, sshd on each
    labkit cluster shape --bandwidth 100mbit  # tc on every link; --delay 5ms where netem exists
    labkit cluster status [--json]
    labkit cluster down                       # everything removed, even after a crash

``labkit.cli`` calls :func:`register` to add the verb.
"""
from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = (
    "A cluster of N hosts on this machine, each a network namespace with its own address, hostname, "
    "sshd and link (needs root). 'up' creates it (and with --spark a Spark standalone master on h1 and a "
    "worker on every host), 'shape' sets the links' bandwidth (tc tbf) and delay (netem, where the kernel "
    "has it), 'status' shows it, 'down' removes every namespace, link, qdisc, key, file and process of the "
    "cluster, also after a crash. Multi-host Horovod: labkit.launch.run(fn, np=2, hosts='h1:1,h2:1'). "
    "Machine-readable output: --json on every sub-command prints one JSON object (status: {up, name, hosts: "
    "[{name, address, namespace, sshd, processes}], shape, spark}). Exit status 2 without root.")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``cluster`` verb (and its sub-commands) to the ``labkit`` command line."""
    p = subparsers.add_parser("cluster", help="a test cluster of namespaced hosts on this machine (root)",
                              description=DESCRIPTION)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=None, help="cluster name (default: $LABKIT_CLUSTER or 'lab')")
    common.add_argument("--json", action="store_true", help="print one JSON object")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    u = sub.add_parser("up", help="create the hosts (and optionally Spark)", parents=[common])
    u.add_argument("--hosts", type=int, default=2, help="number of hosts (default 2)")
    u.add_argument("--spark", action="store_true", help="also start a Spark standalone master and workers")
    u.add_argument("--debian-hostnames", action="store_true",
                   help="map each host's own name to 127.0.1.1 on that host, like Debian's /etc/hosts")
    sub.add_parser("down", help="remove everything the cluster made", parents=[common])
    s = sub.add_parser("shape", help="set every link's bandwidth and delay", parents=[common])
    s.add_argument("--bandwidth", default=None, help="e.g. 10mbit, 100mbit, 1gbit; 'none' removes shaping")
    s.add_argument("--delay", default=None, help="one-way delay, e.g. 5ms (needs the kernel's netem)")
    s.add_argument("--measure", action="store_true", help="then measure TCP goodput h1 -> h2 with iperf3")
    sub.add_parser("status", help="hosts, addresses, shape, Spark", parents=[common])
    sp = sub.add_parser("spark", help="start or stop Spark standalone in the hosts", parents=[common])
    sp.add_argument("what", choices=["start", "stop"])
    p.set_defaults(func=cmd_cluster)
    return p


def _print(args, obj: dict, text: str) -> None:
    print(json.dumps(obj) if args.json else text)


def cmd_cluster(args) -> int:
    from labkit.cluster import netns

    name = args.name or __import__("os").environ.get("LABKIT_CLUSTER") or netns.DEFAULT_NAME
    problem = netns.root_problem()
    if problem and args.action != "status":
        print(f"labkit cluster {args.action}: {problem}", file=sys.stderr)
        return 2
    try:
        if args.action == "up":
            c = netns.up(args.hosts, name=name, loopback_hostname=args.debian_hostnames)
            text = [f"cluster {c.name}: {len(c.hosts)} host(s) on {c.subnet} (namespaces {c.hosts[0].ns}...)"]
            text += [f"  {h.name:<4} {h.address:<14} sshd pid {h.sshd_pid}" for h in c.hosts]
            if args.spark:
                from labkit.cluster import spark_standalone

                info = spark_standalone.start(c)
                text.append(f"  Spark master {info['master']} (web UI {info['ui']} inside the cluster)")
            text.append(f"Horovod: labkit.launch.run(fn, np={len(c.hosts)}, hosts={c.hosts_arg()!r})")
            _print(args, netns.status(c.name), "\n".join(text))
        elif args.action == "down":
            removed = netns.down(name)
            _print(args, {"removed": removed}, "removed: " + (", ".join(removed) or "nothing (no such cluster)"))
        elif args.action == "shape":
            from labkit.cluster import shape

            c = netns.Cluster.load(name)
            info = shape.shape(c, args.bandwidth, args.delay)
            if args.measure and len(c.hosts) > 1:
                info = {**info, "goodput_bps": shape.goodput(c, c.hosts[0].name, c.hosts[1].name)}
            text = f"cluster {c.name}: every link {info['label']}"
            if "goodput_bps" in info:
                text += f"; TCP goodput {c.hosts[0].name} -> {c.hosts[1].name}: {info['goodput_bps'] / 1e6:.1f} Mbit/s"
            _print(args, info, text)
        elif args.action == "status":
            st = netns.status(args.name)
            if not st["up"]:
                _print(args, st, "no cluster is up" + (f" ({problem})" if problem else ""))
            else:
                lines = [f"cluster {st['name']}: {len(st['hosts'])} host(s) on {st['subnet']}, links "
                         f"{st['shape'].get('label', 'unshaped')}"]
                lines += [f"  {h['name']:<4} {h['address']:<14} sshd {'up' if h['sshd'] else 'DOWN'}, "
                          f"{h['processes']} process(es)" for h in st["hosts"]]
                if st["spark"]:
                    lines.append(f"  Spark master {st['spark'].get('master')}")
                _print(args, st, "\n".join(lines))
        elif args.action == "spark":
            from labkit.cluster import spark_standalone

            c = netns.Cluster.load(name)
            if args.what == "start":
                info = spark_standalone.start(c)
                _print(args, info, f"Spark master {info['master']}, workers on {', '.join(info['workers'])}")
            else:
                spark_standalone.stop(c)
                _print(args, {"stopped": True}, "Spark stopped")
    except netns.ClusterError as exc:
        print(f"labkit cluster {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
