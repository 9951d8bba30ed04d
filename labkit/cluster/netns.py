"""A test cluster on one machine: N hosts as Linux network namespaces, joined by a switch.

    c = up(hosts=2)                  # hosts h1, h2 (as root); `labkit cluster up --hosts 2`
    c.run("h2", ["hostname"])        # run a command on a host: its network, hostname, /etc
    c.hosts_arg()                    # "h1:1,h2:1" for launch.run(hosts=...)
    down()                           # removes everything, even after a crash; idempotent

How a cluster is built (this is how container networks are made):

- a *switch* namespace holds a Linux bridge; each host namespace has a veth ``eth0`` whose peer
  is a port of that bridge. The root namespace gets no interface, address or route: the
  cluster's addresses (``10.210.<id>.<i>/24``) exist only inside its namespaces.
- every name a cluster creates starts with ``lk-<name>-`` (namespaces) and every file lives in
  ``/run/labkit/clusters/<name>/`` or ``/etc/netns/lk-<name>-*`` (``ip netns exec`` shows those
  files as ``/etc/hosts`` and ``/etc/ssh`` inside the host), so two clusters never collide.
- each host runs one ``sshd`` (port 2222, key only, keys generated per cluster) in its own
  network and UTS namespace (``hostname`` prints ``h1``). Its ``/etc/ssh/ssh_config`` includes a
  drop-in naming every host, port and key, so ``ssh h2`` and ``horovodrun -H h1:1,h2:1`` need no
  extra flags. Commands "on a host" enter the sshd's namespaces with ``nsenter``.
- the job folder is on the one file system that every namespace shares.

:mod:`labkit.cluster.shape` shapes the links; :mod:`labkit.cluster.spark_standalone` starts Spark
in the hosts. Everything here needs root (network namespaces, veths, tc).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Where clusters keep their state, keys and logs (tmpfs: gone after a reboot, like the namespaces).
STATE_ROOT = Path(os.environ.get("LABKIT_CLUSTER_STATE", "/run/labkit/clusters"))
NETNS_ETC = Path("/etc/netns")
SSH_PORT = 2222
DEFAULT_NAME = "lab"
_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")


class ClusterError(RuntimeError):
    """A cluster operation failed (the message says why and what to do)."""


def is_root() -> bool:
    return os.geteuid() == 0


def root_problem() -> str | None:
    """Why clusters can't be built here (None if they can): root and the tools are needed."""
    if not is_root():
        return "labkit cluster needs root (network namespaces, veth links and tc need CAP_NET_ADMIN); run it as root"
    missing = [t for t in ("ip", "tc", "nsenter", "unshare", "ssh-keygen") if not shutil.which(t)]
    if not Path("/usr/sbin/sshd").exists():
        missing.append("sshd")
    if missing:
        return (f"missing tools: {', '.join(missing)} (Debian: apt-get install -y iproute2 util-linux "
                f"openssh-server; 'make setup' installs them as root)")
    return None


def require_root() -> None:
    problem = root_problem()
    if problem:
        raise ClusterError(problem)


def _sh(*argv, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=input)
    if check and res.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, argv))} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res


# --------------------------------------------------------------------------------------------
# The cluster's description (saved as state.json)
# --------------------------------------------------------------------------------------------
@dataclass
class Host:
    """One namespaced host: ``name`` (its hostname), ``ns`` (its network namespace) and ``address``."""

    name: str
    ns: str
    address: str
    port: str          # its switch port (an interface in the switch namespace)
    sshd_pid: int = 0


@dataclass
class Cluster:
    """A running cluster, as recorded in ``/run/labkit/clusters/<name>/state.json``."""

    name: str
    id: int
    switch: str
    subnet: str
    hosts: list[Host]
    shape: dict = field(default_factory=dict)
    spark: dict = field(default_factory=dict)
    created: float = 0.0

    # ------------------------------------------------------------------ files
    @property
    def dir(self) -> Path:
        return STATE_ROOT / self.name

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.rename(self.dir / "state.json")

    @classmethod
    def load(cls, name: str = DEFAULT_NAME) -> "Cluster":
        path = STATE_ROOT / name / "state.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ClusterError(f"no cluster {name!r} is up (no {path}); start one with 'labkit cluster up'") from None
        data["hosts"] = [Host(**h) for h in data["hosts"]]
        return cls(**data)

    # ------------------------------------------------------------------ hosts
    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name or h.address == name:
                return h
        raise ClusterError(f"cluster {self.name!r} has no host {name!r} (hosts: {', '.join(self.names)})")

    def hosts_arg(self, slots: int = 1, count: int | None = None) -> str:
        """horovodrun's ``-H`` for the first ``count`` hosts (default all), ``slots`` workers each."""
        return ",".join(f"{h.name}:{slots}" for h in self.hosts[:count])

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` as a command that runs on ``host``: in its network, hostname and /etc."""
        pid = self.host(host).sshd_pid
        return ["nsenter", f"--target={pid}", "--net", "--uts", "--mount", "--", *map(str, argv)]

    def run(self, host: str, argv: list[str], check: bool = True, timeout: float | None = 60,
            **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` on ``host`` and wait (output captured as text)."""
        res = subprocess.run(self.command(host, argv), capture_output=True, text=True, timeout=timeout, **kwargs)
        if check and res.returncode != 0:
            raise ClusterError(f"on {host}: {' '.join(map(str, argv))} failed ({res.returncode}): "
                               f"{res.stderr.strip()[-2000:]}")
        return res

    def pids(self, host: str) -> list[int]:
        """Every process in ``host``'s network namespace (sshd included)."""
        return namespace_pids(self.host(host).ns)

    def processes(self, host: str, exclude_daemons: bool = True) -> list[int]:
        """Processes on ``host`` other than its sshd and the cluster's Spark daemons."""
        daemons = {self.host(host).sshd_pid} | set(self.spark.get("pids", {}).get(host, [])) if exclude_daemons else set()
        return [p for p in self.pids(host) if p not in daemons]

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh" / "ssh_config.d" / "labkit-cluster.conf"


def namespace_pids(ns: str) -> list[int]:
    res = _sh("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []


# --------------------------------------------------------------------------------------------
# Which cluster
# --------------------------------------------------------------------------------------------
def names() -> list[str]:
    """The clusters that are up (by their state files)."""
    if not STATE_ROOT.is_dir():
        return []
    return sorted(p.parent.name for p in STATE_ROOT.glob("*/state.json"))


def current(name: str | None = None) -> Cluster | None:
    """The cluster ``name``, else ``$LABKIT_CLUSTER``'s, else the only one that is up (or None)."""
    name = name or os.environ.get("LABKIT_CLUSTER")
    if name:
        return Cluster.load(name)
    up_now = names()
    if len(up_now) == 1:
        return Cluster.load(up_now[0])
    if DEFAULT_NAME in up_now:
        return Cluster.load(DEFAULT_NAME)
    return None


def for_hosts(hosts: str | None) -> Cluster | None:
    """The running cluster that has every host named in ``hosts`` (horovodrun ``-H`` syntax), or None.

    Cheap and safe without root: no state, no cluster.
    """
    if not hosts:
        return None
    wanted = {entry.strip().partition(":")[0] for entry in hosts.split(",") if entry.strip()}
    try:
        c = current()
    except ClusterError:
        return None
    if c is None or not wanted <= set(c.names):
        return None
    return c


# --------------------------------------------------------------------------------------------
# up / down
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _lock():
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(STATE_ROOT / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prefix(name: str) -> str:
    return f"lk-{name}-"


def _free_id() -> int:
    used = set()
    for n in names():
        with contextlib.suppress(ClusterError):
            used.add(Cluster.load(n).id)
    for i in range(1, 250):
        if i not in used:
            return i
    raise ClusterError("no free cluster id (250 clusters up?)")


def _hosts_file(c: Cluster, me: Host, loopback_hostname: bool) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if loopback_hostname:  # Debian's default: the machine's own name on 127.0.1.1
        lines.append(f"127.0.1.1\t{me.name}")
    lines += [f"{h.address}\t{h.name}" for h in c.hosts]
    return "\n".join(lines) + "\n"


def _write_ssh(c: Cluster) -> Path:
    """Keys, sshd config and the client config drop-in; returns the ssh folder."""
    ssh = c.dir / "ssh"
    (ssh / "ssh_config.d").mkdir(parents=True, exist_ok=True)
    os.chmod(c.dir, 0o700)
    for key in ("id_ed25519", "ssh_host_ed25519_key"):
        if not (ssh / key).exists():
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"labkit-cluster-{c.name}", "-f", ssh / key)
    shutil.copy(ssh / "id_ed25519.pub", ssh / "authorized_keys")
    host_key = (ssh / "ssh_host_ed25519_key.pub").read_text().split()
    (ssh / "known_hosts").write_text("".join(
        f"[{h.name}]:{SSH_PORT},[{h.address}]:{SSH_PORT} {host_key[0]} {host_key[1]}\n" for h in c.hosts))
    (ssh / "sshd_config").write_text(f"""# labkit cluster {c.name}: one sshd per namespaced host (generated)
Port {SSH_PORT}
ListenAddress 0.0.0.0
HostKey {ssh}/ssh_host_ed25519_key
AuthorizedKeysFile {ssh}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
MaxStartups 64:30:128
MaxSessions 64
""")
    host_names = " ".join(f"{h.name} {h.address}" for h in c.hosts)
    c.ssh_config.write_text(f"""# labkit cluster {c.name}: how its hosts are reached (generated; removed by 'labkit cluster down')
Host {host_names}
    Port {SSH_PORT}
    User root
    IdentityFile {ssh}/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile {ssh}/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
    LogLevel ERROR
    ConnectTimeout 10
    ServerAliveInterval 5
    ServerAliveCountMax 3
""")
    return ssh


def _etc_for(c: Cluster, h: Host, loopback_hostname: bool) -> None:
    """``/etc/netns/<ns>/``: what ``/etc/hosts``, ``/etc/hostname`` and ``/etc/ssh`` are on that host."""
    etc = NETNS_ETC / h.ns
    (etc / "ssh" / "ssh_config.d").mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(_hosts_file(c, h, loopback_hostname))
    (etc / "hostname").write_text(h.name + "\n")
    (etc / "ssh" / "ssh_config").write_text(
        "# labkit cluster: the client configuration on this namespaced host\n"
        "Include /etc/ssh/ssh_config.d/*.conf\n")
    shutil.copy(c.ssh_config, etc / "ssh" / "ssh_config.d" / c.ssh_config.name)


def _start_sshd(c: Cluster, h: Host) -> int:
    ssh = c.dir / "ssh"
    pidfile = c.dir / f"sshd-{h.name}.pid"
    log = c.dir / f"sshd-{h.name}.log"
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    pidfile.unlink(missing_ok=True)
    # its own UTS namespace (so that `hostname` says h1), inside the host's network namespace;
    # `ip netns exec` also shows /etc/netns/<ns>/* as /etc/*. sshd daemonizes and keeps all that.
    _sh("ip", "netns", "exec", h.ns, "unshare", "--uts", "sh", "-c",
        'hostname "$0" && exec /usr/sbin/sshd -f "$1" -E "$2" -o PidFile="$3"',
        h.name, ssh / "sshd_config", log, pidfile)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, IndexError):  # not written yet, or half-written
            return int(pidfile.read_text().split()[0])
        time.sleep(0.05)
    raise ClusterError(f"sshd on {h.name} did not start: {log.read_text() if log.exists() else 'no log'}")


def up(hosts: int = 2, name: str = DEFAULT_NAME, loopback_hostname: bool = False, wait_ssh: bool = True,
       down_at_exit: bool = False) -> Cluster:
    """Create cluster ``name`` with ``hosts`` namespaced hosts h1..hN, each running sshd; return it.

    A cluster of that name that is already up is returned as it is (same size) or refused.
    ``loopback_hostname=True`` maps each host's own name to 127.0.1.1 on that host, as Debian's
    default ``/etc/hosts`` does (the case that breaks unpatched Horovod 0.28.1's Gloo).
    ``down_at_exit=True`` removes the cluster when this Python process exits (a notebook's kernel).
    """
    require_root()
    if not _NAME.match(name):
        raise ClusterError(f"cluster names are 1-12 lower-case letters and digits, starting with a letter; got {name!r}")
    if not 1 <= hosts <= 200:
        raise ClusterError(f"hosts must be between 1 and 200, got {hosts}")
    with _lock():
        if (STATE_ROOT / name / "state.json").exists():
            c = Cluster.load(name)
            if len(c.hosts) == hosts and all(_alive(h.sshd_pid) for h in c.hosts):
                return c
            raise ClusterError(f"cluster {name!r} is already up with {len(c.hosts)} host(s); "
                               f"run 'labkit cluster down --name {name}' first")
        _down_locked(name)  # leftovers of a crashed run
        cid = _free_id()
        pre = _prefix(name)
        subnet = f"10.210.{cid}.0/24"
        c = Cluster(name=name, id=cid, switch=pre + "sw", subnet=subnet, created=time.time(),
                    hosts=[Host(f"h{i}", f"{pre}h{i}", f"10.210.{cid}.{i}", f"p{i}") for i in range(1, hosts + 1)])
        c.save()  # first, so that `down` knows what to remove even if we crash half-way
        try:
            _sh("ip", "netns", "add", c.switch)
            _sh("ip", "-n", c.switch, "link", "add", "br0", "type", "bridge")
            _sh("ip", "-n", c.switch, "link", "set", "br0", "up")
            _sh("ip", "-n", c.switch, "link", "set", "lo", "up")
            _write_ssh(c)
            for h in c.hosts:
                _sh("ip", "netns", "add", h.ns)
                # both ends are created inside namespaces: the root namespace never sees them
                _sh("ip", "-n", c.switch, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
                _sh("ip", "-n", c.switch, "link", "set", h.port, "master", "br0", "up")
                _sh("ip", "-n", h.ns, "addr", "add", f"{h.address}/24", "dev", "eth0")
                _sh("ip", "-n", h.ns, "link", "set", "eth0", "up")
                _sh("ip", "-n", h.ns, "link", "set", "lo", "up")
                _etc_for(c, h, loopback_hostname)
            for h in c.hosts:
                h.sshd_pid = _start_sshd(c, h)
            c.save()
            if wait_ssh:
                _wait_for_ssh(c)
        except BaseException:
            _down_locked(name)
            raise
    if down_at_exit:
        import atexit

        atexit.register(down, name)
    return c


def _wait_for_ssh(c: Cluster, timeout: float = 20) -> None:
    """Every host reaches every other host by ssh (what horovodrun will do)."""
    first = c.hosts[0].name
    deadline = time.monotonic() + timeout
    for h in c.hosts:
        while True:
            res = c.run(first, ["ssh", h.name, "hostname"], check=False, timeout=15)
            if res.returncode == 0 and res.stdout.strip() == h.name:
                break
            if time.monotonic() > deadline:
                raise ClusterError(f"ssh from {first} to {h.name} does not work: {res.stderr.strip()}")
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_all(pids: list[int], grace: float = 3.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def _down_locked(name: str) -> list[str]:
    pre = _prefix(name)
    res = _sh("ip", "netns", "list", check=False)
    spaces = [line.split()[0] for line in res.stdout.splitlines() if line.split() and line.split()[0].startswith(pre)]
    removed = []
    # every process in the cluster's namespaces: sshd, its sessions, workers, Spark, iperf
    pids = sorted({p for ns in spaces for p in namespace_pids(ns)} - {os.getpid()})
    if pids:
        _kill_all(pids)
        removed.append(f"{len(pids)} process(es)")
    for ns in spaces:  # deleting a namespace deletes its links and qdiscs with it
        _sh("ip", "netns", "del", ns, check=False)
        removed.append(f"namespace {ns}")
    for etc in NETNS_ETC.glob(pre + "*") if NETNS_ETC.is_dir() else []:
        shutil.rmtree(etc, ignore_errors=True)
        removed.append(str(etc))
    state = STATE_ROOT / name
    if state.exists():
        shutil.rmtree(state, ignore_errors=True)
        removed.append(str(state))
    return removed


def down(name: str = DEFAULT_NAME) -> list[str]:
    """Remove cluster ``name``: its processes, namespaces (links, qdiscs), keys and files.

    Works from names alone, so it also cleans up after a crash; removing nothing is fine.
    Returns what was removed.
    """
    require_root()
    if not _NAME.match(name):
        raise ClusterError(f"not a cluster name: {name!r}")
    with _lock():
        return _down_locked(name)


def leftovers(name: str) -> list[str]:
    """Anything of cluster ``name`` that still exists (empty after a clean ``down``)."""
    pre = _prefix(name)
    out = [line.split()[0] for line in _sh("ip", "netns", "list", check=False).stdout.splitlines()
           if line.split() and line.split()[0].startswith(pre)]
    out += [str(p) for p in NETNS_ETC.glob(pre + "*")] if NETNS_ETC.is_dir() else []
    if (STATE_ROOT / name).exists():
        out.append(str(STATE_ROOT / name))
    return out


def status(name: str | None = None) -> dict:
    """What is up: hosts, addresses, sshd alive, link shape, Spark, and processes per host."""
    c = current(name)
    if c is None:
        return {"up": False, "clusters": names()}
    hosts = []
    for h in c.hosts:
        hosts.append({"name": h.name, "namespace": h.ns, "address": h.address, "sshd": _alive(h.sshd_pid),
                      "processes": len(c.pids(h.name)) if is_root() else None})
    return {"up": True, "name": c.name, "id": c.id, "subnet": c.subnet, "switch": c.switch, "hosts": hosts,
            "shape": c.shape, "spark": c.spark, "ssh_config": str(c.ssh_config), "clusters": names()}
