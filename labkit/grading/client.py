"""The grader's notebook client: runs one prepared submission in a sandboxed kernel, from outside.

Only the student's **kernel** runs inside the sandbox. This client runs in the grader, as a process
of its own (``python -I``, from ``/``), and talks to the kernel over Jupyter's ZMQ protocol on
``ipc`` sockets in a folder bound into the sandbox. So everything that decides a grade is observed
here, where student code can't reach:

- which cells ran, timed out or were running when the kernel died (the sandbox's exit is seen by
  this process, its parent);
- the exported values: each question's values come back in the reply to the client's own export
  request (:mod:`labkit.grading.export`), right when they are computed; nothing is read back from
  files that later cells could rewrite;
- the report, printed on this process's stdout, which the kernel can't write to (it gets its own
  pipe, and lives in another PID namespace as another user).

The socket folder is writable by the sandbox user only until the kernel has bound its sockets;
then it belongs to root again, so student code can't swap a socket for a link to something else.

Everything the kernel sends is untrusted: each message is size-limited by ZMQ, its signature
checked, parsed by :mod:`labkit.grading.untrusted` and type-checked; malformed ones are dropped and
counted. Outputs are kept up to a budget.

**Machinery failures are not the student's.** If the kernel doesn't start, the sandbox exits
before it is ready, or the kernel is idle while the client still waits for a reply (a lost
message: the client asks the kernel's shell directly with a second connection -- a busy kernel
can't answer), the client reports ``machinery`` and the grader retries the submission. A cell that
really runs past its limit (the kernel's shell stays busy) is the student's ``timeout``.

``python -I -c 'from labkit.grading.client import main; main()'`` reads a job (JSON) on stdin and
prints one report (JSON) on stdout; :func:`labkit.grading.batch.grade_one` builds both.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid

from labkit.grading import untrusted

PORTS = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}
DELIM = b"<IDS|MSG>"
SHELL_MAX_BYTES = 128 * 1024 * 1024   # an execute_reply carrying exported values
IOPUB_MAX_BYTES = 32 * 1024 * 1024    # one output message
EXPORTS_MAX_BYTES = 256 * 1024 * 1024 # all the values one run exports (past it, later exports are dropped)
PROBE_AFTER = 2.0      # seconds a request may go unanswered before the client asks the kernel if it is busy
PROBE_EVERY = 2.0
STALL_GRACE = 5.0      # after the kernel has shown it is free, how long a reply may still be in flight
IOPUB_GRACE = 5.0      # after the reply, how long to wait for the kernel's "idle" on IOPub
INTERRUPT_GRACE = 10.0
WATCH_EVERY = 0.5      # disk and memory watchdogs
KEEP_MIMES = ("text/plain", "image/png")


class Machinery(Exception):
    """The grading machinery failed (not the student's doing): the grader retries."""


class Stop(Exception):
    """The run ends here: the kernel died, a limit was hit, or the wall time ran out."""

    def __init__(self, status: str, why: str):
        super().__init__(why)
        self.status, self.why = status, why


# --- messages ------------------------------------------------------------------------------------
class Connection:
    """Sockets to one kernel (shell, IOPub, control, and a second shell connection for probes)."""

    def __init__(self, ipc_prefix: str, key: bytes):
        import zmq

        from jupyter_client.session import Session

        self.zmq = zmq
        self.key = key
        self.session = Session(key=key, signature_scheme="hmac-sha256", check_pid=False)
        self.ctx = zmq.Context()
        self.sockets = {}
        for name, kind, port, limit in (("shell", zmq.DEALER, "shell", SHELL_MAX_BYTES),
                                        ("probe", zmq.DEALER, "shell", 1024 * 1024),
                                        ("control", zmq.DEALER, "control", 1024 * 1024),
                                        ("iopub", zmq.SUB, "iopub", IOPUB_MAX_BYTES)):
            sock = self.ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, limit)
            if kind == zmq.SUB:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(f"ipc://{ipc_prefix}-{PORTS[port]}")
            self.sockets[name] = sock
        self.poller = zmq.Poller()
        for sock in self.sockets.values():
            self.poller.register(sock, zmq.POLLIN)
        self.malformed = 0

    def send(self, channel: str, msg_type: str, content: dict) -> str:
        msg = self.session.msg(msg_type, content)
        self.session.send(self.sockets[channel], msg)
        return msg["header"]["msg_id"]

    def poll(self, timeout: float) -> list[tuple[str, dict]]:
        """Messages that arrived within ``timeout`` seconds: [(channel, message)], valid ones only."""
        ready = dict(self.poller.poll(max(0, int(timeout * 1000))))
        out = []
        for name, sock in self.sockets.items():
            if sock not in ready:
                continue
            for _ in range(1000):  # drain, but let the caller's clocks run
                try:
                    frames = sock.recv_multipart(self.zmq.NOBLOCK)
                except self.zmq.Again:
                    break
                msg = self.parse(frames)
                if msg is None:
                    self.malformed += 1
                else:
                    out.append((name, msg))
        return out

    def parse(self, frames: list[bytes]) -> dict | None:
        return parse_message(frames, self.key)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(0)
        self.ctx.term()


def parse_message(frames: list[bytes], key: bytes) -> dict | None:
    """A kernel message as ``{type, parent, content}``, or None when it is not one (unsigned, not JSON,
    nested too deeply, wrong types). A message whose headers are good but whose content is not keeps
    ``content`` None and says why in ``bad``: a reply that arrived broken is not a lost reply."""
    try:
        parts = frames[frames.index(DELIM) + 1:]
    except ValueError:
        return None
    if len(parts) < 5 or not all(isinstance(p, bytes) for p in parts[:5]):
        return None
    signature, header, parent, metadata, content = parts[:5]
    check = hmac.new(key, header + parent + metadata + content, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(signature, check):
        return None
    try:
        header = untrusted.loads(header, 65536, 8, "a message header")
        parent = untrusted.loads(parent, 65536, 8, "a message's parent header")
    except untrusted.Untrusted:
        return None
    if type(header) is not dict or type(parent) is not dict or type(header.get("msg_type")) is not str:
        return None
    parent_id = parent.get("msg_id")
    msg = {"type": header["msg_type"][:100], "parent": parent_id if type(parent_id) is str else None,
           "content": None, "bad": None, "size": len(content)}
    try:
        body = untrusted.loads(content, len(content), untrusted.MAX_DEPTH, "its content")
    except untrusted.Untrusted as exc:
        msg["bad"] = str(exc)
        return msg
    if type(body) is not dict:
        msg["bad"] = "its content is not a JSON object"
        return msg
    msg["content"] = body
    return msg


# --- outputs -------------------------------------------------------------------------------------
class Outputs:
    """Cell outputs kept for the feedback page: plain, typed, and within a byte budget."""

    def __init__(self, budget: int):
        self.budget, self.used, self.truncated = budget, 0, False

    def add(self, outs: list, msg_type: str, c: dict) -> None:
        if msg_type == "clear_output":
            outs.clear()
            return
        if msg_type == "stream":
            name, text = c.get("name"), c.get("text")
            if name not in ("stdout", "stderr") or type(text) is not str:
                return
            if not self._take(len(text)):
                return
            if outs and outs[-1]["output_type"] == "stream" and outs[-1]["name"] == name \
                    and len(outs[-1]["text"]) < 1_000_000:
                outs[-1]["text"] += text
            else:
                outs.append({"output_type": "stream", "name": name, "text": text})
        elif msg_type in ("display_data", "execute_result"):
            data = c.get("data")
            if type(data) is not dict:
                return
            kept = {k: data[k] for k in KEEP_MIMES if type(data.get(k)) is str}
            if kept and self._take(sum(len(v) for v in kept.values())):
                outs.append({"output_type": "display_data", "data": kept})
        elif msg_type == "error":
            tb = c.get("traceback")
            tb = [t for t in tb[-30:] if type(t) is str] if type(tb) is list else []
            out = {"output_type": "error", "ename": str(c.get("ename"))[:200], "evalue": str(c.get("evalue"))[:5000],
                   "traceback": tb}
            if self._take(len(out["evalue"]) + sum(map(len, tb))):
                outs.append(out)

    def _take(self, size: int) -> bool:
        if self.used + size > self.budget:
            if not self.truncated:
                self.truncated = True
            return False
        self.used += size
        return True


# --- the sandbox's resources ---------------------------------------------------------------------
def rss_bytes_of_user(uid: int) -> int:
    """Resident memory of every process of ``uid`` (the watchdog used where no memory cgroup exists)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as fh:
                status = fh.read(4096).decode("ascii", "replace")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            if int(fields.get("Uid", "").split()[0]) == uid:
                total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        except (ValueError, IndexError):
            continue
    return total


def cgroup_memory(job_memory: dict) -> tuple[int, int | None]:
    """(OOM kills, peak bytes) of the slot's memory cgroup, from its files (0/None when unknown)."""
    folder = job_memory.get("cgroup")
    if not folder:
        return 0, None
    kills, peak = 0, None
    for name in ("memory.events", "memory.oom_control"):
        try:
            for line in open(os.path.join(folder, name)).read().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    kills = max(kills, int(value))
        except (OSError, ValueError):
            pass
    for name in ("memory.peak", "memory.max_usage_in_bytes"):
        try:
            peak = int(open(os.path.join(folder, name)).read().split()[0])
            break
        except (OSError, ValueError, IndexError):
            pass
    return kills, peak


# --- the run -------------------------------------------------------------------------------------
class Run:
    """One submission's run: start the kernel, execute the steps, export, stop."""

    def __init__(self, job: dict):
        self.job = job
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.tail = bytearray()
        self.child_pid: int | None = None
        self.info = b""
        self.info_fd: int | None = None
        self.disk_base = (0, 0)
        self.last_watch = 0.0
        self.ready_at: float | None = None
        self.outputs = Outputs(int(job["max_output"]))
        self.exported_bytes = 0
        self.report = {"status": "ok", "why": "", "stopped_at": None, "timed_out": [], "outputs": {}, "ran": [],
                       "exports": {}, "final": None, "tamper": None, "guard": None, "truncated": False,
                       "disk_exceeded": False, "memory_exceeded": False, "oom_kills": 0, "peak_memory_mb": None,
                       "exit_status": None, "stderr_tail": "", "recovered": 0, "malformed_messages": 0,
                       "lost_output": False, "exports_too_large": False,
                       "timings": {}}

    # -- kernel start -----------------------------------------------------------------------------
    def start(self) -> None:
        job = self.job
        key = uuid.uuid4().hex
        ipc = job["ipc_host"]
        conn = {"transport": "ipc", "ip": job["kernel_ip"], "key": key, "signature_scheme": "hmac-sha256",
                "kernel_name": "", **{f"{k}_port": v for k, v in PORTS.items()}}
        path = os.path.join(ipc, "kernel.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), "w") as fh:
            json.dump(conn, fh)
        if job.get("uid") is not None:  # the kernel creates its sockets here; locked again once it is up
            os.chown(ipc, job["uid"], job["gid"])
            os.chmod(ipc, 0o700)
        wants_info = any("{info_fd}" in a for a in job["argv"])
        r, w = os.pipe() if wants_info else (None, None)
        argv = [a.replace("{info_fd}", str(w)) for a in job["argv"]]
        t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, pass_fds=(w,) if wants_info else (),
                                         start_new_session=True, cwd=job.get("cwd") or "/")
        except OSError as exc:
            raise Machinery(f"the sandbox could not be started: {exc}") from exc
        finally:
            if wants_info:
                os.close(w)
        if wants_info:
            self.info_fd = r
            os.set_blocking(r, False)
        threading.Thread(target=self._drain, daemon=True).start()
        self.conn = Connection(os.path.join(ipc, "k"), key.encode())
        self._wait_ready(t0)
        if job.get("uid") is not None:
            self._lock_ipc(ipc)
        self.ready_at = time.monotonic()
        self.report["timings"]["kernel_start"] = round(self.ready_at - t0, 2)
        self.disk_base = self._disk_usage() or (0, 0)

    def _drain(self) -> None:
        for block in iter(lambda: self.proc.stdout.read1(4096), b""):
            self.tail += block
            del self.tail[:-16384]

    def _read_info(self) -> None:
        """bwrap's ``--info-fd`` JSON: the host PID of the sandbox's first process."""
        if self.info_fd is None or self.child_pid is not None:
            return
        try:
            chunk = os.read(self.info_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        self.info += chunk
        if not chunk or b"}" in self.info:
            try:
                pid = json.loads(self.info.decode("ascii", "replace")).get("child-pid")
                self.child_pid = pid if type(pid) is int and pid > 1 else None
            except (ValueError, AttributeError):
                pass
            if not chunk or self.child_pid:
                os.close(self.info_fd)
                self.info_fd = None

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + float(self.job["startup_timeout"])
        info_id, asked, got_info, got_iopub = None, 0.0, False, False
        while not (got_info and got_iopub):
            now = time.monotonic()
            if self.proc.poll() is not None:
                raise Machinery(f"the sandbox exited with status {self.proc.returncode} before the kernel was ready: "
                                + self._tail_text(600))
            if now > deadline:
                raise Machinery(f"the kernel was not ready after {self.job['startup_timeout']} s: " + self._tail_text(600))
            if info_id is None or (got_info and not got_iopub and now - asked > 1.0):
                info_id, asked = self.conn.send("probe", "kernel_info_request", {}), now
            for channel, msg in self.conn.poll(0.1):
                if channel == "probe" and msg["parent"] == info_id and msg["type"] == "kernel_info_reply":
                    got_info = True
                elif channel == "iopub":
                    got_iopub = True
            self._read_info()

    def _lock_ipc(self, ipc: str) -> None:
        """Once the kernel listens: the socket folder is root's again, so its sockets can't be swapped."""
        try:
            os.chown(ipc, 0, 0)
            os.chmod(ipc, 0o755)
            for port in PORTS.values():
                st = os.lstat(os.path.join(ipc, f"k-{port}"))
                if not stat.S_ISSOCK(st.st_mode):
                    raise Machinery(f"the kernel's socket k-{port} is not a socket")
        except OSError as exc:
            raise Machinery(f"could not lock the kernel's socket folder: {exc}") from exc

    def _tail_text(self, n: int) -> str:
        return untrusted.clean_text(bytes(self.tail[-n:]).decode("utf-8", "replace")).strip()

    # -- watchdogs --------------------------------------------------------------------------------
    def _disk_usage(self) -> tuple[int, int] | None:
        """(bytes, files) in the sandbox's working folder (its tmpfs), measured from outside."""
        where = self.job.get("disk_path")
        if where is None:
            if self.child_pid is None:
                return None
            where = f"/proc/{self.child_pid}/root/sandbox"
        try:
            st = os.statvfs(where)
        except OSError:
            return None
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree

    def watch(self, force: bool = False) -> None:
        """Every half second: the working folder's size and file count, and memory where no cgroup
        bounds it. Over a limit, the sandbox is stopped."""
        now = time.monotonic()
        if now - self.last_watch < WATCH_EVERY and not force:
            return
        self.last_watch = now
        self._read_info()
        usage = self._disk_usage()
        disk = self.job["disk"]
        if usage is not None:
            used, files = usage[0] - self.disk_base[0], usage[1] - self.disk_base[1]
            if used > disk["max_bytes"] or files > disk["max_files"]:
                self.report["disk_exceeded"] = True
                self.kill()
                raise Stop("crashed", "disk")
        memory = self.job["memory"]
        if memory.get("watch_uid") is not None:
            if rss_bytes_of_user(memory["watch_uid"]) > memory["limit_bytes"]:
                self.report["memory_exceeded"] = True
                self.kill()
                raise Stop("crashed", "memory")

    # -- requests ---------------------------------------------------------------------------------
    def request(self, step: int | None, code: str, *, record: bool, user_expressions: dict | None = None,
                cell_timeout: float, label: str = "a grader request") -> dict | None:
        """Run ``code`` in the kernel; returns the execute_reply's content (None when recovered without).

        Raises Stop (kernel died, wall time, an unstoppable cell), or Machinery (a lost reply).
        """
        conn = self.conn
        silent = not record
        msg_id = conn.send("shell", "execute_request", {
            "code": code, "silent": silent, "store_history": record, "user_expressions": user_expressions or {},
            "allow_stdin": False, "stop_on_error": False})
        drop = self.job.get("faults", {}).get("drop")
        dropping = drop if drop and drop.get("step") == step else None
        outs: list = []
        if record and step is not None:  # kept even if the kernel dies in this cell
            self.report["outputs"][str(step)] = outs
        start = time.monotonic()
        reply = reply_at = idle_at = None
        probe_id, probe_at, free_at = None, 0.0, None
        interrupted_at = None
        wall = self.ready_at + float(self.job["timeout"])
        self.watch(force=True)  # what the previous cell did (a full disk, say) is seen before this one runs
        while True:
            now = time.monotonic()
            if reply is not None and idle_at is None and now - reply_at > IOPUB_GRACE:
                if record:
                    self.report["lost_output"] = True  # IOPub dropped messages (too large, or too many)
                break
            if reply is not None and idle_at is not None:
                break
            if self.proc.poll() is not None:
                self.report["exit_status"] = self.proc.returncode
                raise Stop("crashed", "died")
            if now > wall:
                self.kill()
                raise Stop("timeout", "wall")
            self.watch()
            if reply is None:
                if free_at is not None and now - free_at > STALL_GRACE:
                    if idle_at is not None and record:
                        self.report["recovered"] += 1  # the cell finished (IOPub said so); only its reply was lost
                        break
                    raise Machinery(f"the kernel finished {label} but its reply never reached the grader "
                                    "(a lost message)")
                if interrupted_at is None and now - start > cell_timeout:
                    if probe_id is None or now - probe_at > PROBE_EVERY:  # is it really busy? ask first
                        probe_id, probe_at = conn.send("probe", "kernel_info_request", {}), now
                    elif now - probe_at >= 1.0 and free_at is None:  # asked a second ago, no answer: it runs
                        conn.send("control", "interrupt_request", {})
                        interrupted_at = now
                        if step is not None:
                            self.report["timed_out"].append(step)
                        outs.append({"output_type": "error", "ename": "CellTimeout",
                                     "evalue": f"this cell ran past {cell_timeout:g} s and was interrupted",
                                     "traceback": []})
                elif interrupted_at is not None and free_at is None and \
                        now - interrupted_at > min(INTERRUPT_GRACE, max(2.0, cell_timeout / 2)):
                    self.kill()
                    raise Stop("timeout", "unstoppable")
                elif now - start > PROBE_AFTER and now - probe_at > PROBE_EVERY and free_at is None:
                    probe_id, probe_at = conn.send("probe", "kernel_info_request", {}), now
            for channel, msg in conn.poll(0.1):
                if msg["parent"] == probe_id and channel == "probe":
                    free_at = time.monotonic() if free_at is None else free_at
                if msg["parent"] != msg_id:
                    continue
                if msg["content"] is None:  # right request, broken content: counted, never used
                    conn.malformed += 1
                    if channel == "shell" and msg["type"] == "execute_reply" and reply is None:
                        reply, reply_at = {}, time.monotonic()
                    continue
                if channel == "shell" and msg["type"] == "execute_reply":
                    if dropping and "reply" in dropping.get("what", ()):
                        continue
                    if reply is None:
                        reply, reply_at = msg["content"], time.monotonic()
                        self.exported_bytes += 0 if record else msg["size"]
                        if self.exported_bytes > EXPORTS_MAX_BYTES:
                            self.report["exports_too_large"] = True
                            reply = {}
                elif channel == "iopub":
                    if msg["type"] == "status":
                        if msg["content"].get("execution_state") == "idle":
                            if dropping and "idle" in dropping.get("what", ()):
                                continue
                            idle_at = time.monotonic()
                    elif record:
                        self.outputs.add(outs, msg["type"], msg["content"])
        if record and step is not None:
            self.report["ran"].append(step)
        return reply

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass

    # -- the whole run ----------------------------------------------------------------------------
    def run(self) -> dict:
        job, report = self.job, self.report
        t0 = time.monotonic()
        current = None
        try:
            self.start()
            cell_timeout = float(job["cell_timeout"])
            mod = "__import__('labkit.grading.export', fromlist=['export'])"
            reply = self.request(None, f"{mod}.guard_start()", record=False, cell_timeout=cell_timeout,
                                 label="the tripwire's start")
            report["guard"] = bool(reply and reply.get("status") == "ok")
            cells_time, export_time, slowest = 0.0, 0.0, (None, 0.0)
            for i, step in enumerate(job["steps"]):
                current = i
                s0 = time.monotonic()
                if "cell" in step:
                    self.request(i, step["source"], record=True, cell_timeout=cell_timeout, label=f"cell {step['cell']}")
                    took = time.monotonic() - s0
                    cells_time += took
                    slowest = max(slowest, (i, took), key=lambda x: x[1])
                else:
                    expr = f"{mod}.export({step['plan']!r}, globals())"
                    reply = self.request(i, "", record=False, user_expressions={"labkit": expr},
                                         cell_timeout=cell_timeout, label=f"the export of {step['export']}")
                    payload = _payload(reply)
                    if payload is not None:
                        report["exports"].setdefault(step["export"], []).append(payload)
                    export_time += time.monotonic() - s0
            current = "final"
            s0 = time.monotonic()
            expr = f"{mod}.finish({job['final']!r}, globals())"
            reply = self.request(None, "", record=False, user_expressions={"labkit": expr}, cell_timeout=cell_timeout,
                                 label="the final export")
            payload = _payload(reply)
            if isinstance(payload, dict):
                report["final"] = payload.get("questions") if type(payload.get("questions")) is dict else None
                report["tamper"] = payload.get("tamper") if type(payload.get("tamper")) is list else None
            export_time += time.monotonic() - s0
            report["timings"].update(cells=round(cells_time, 2), exports=round(export_time, 2),
                                     slowest_step=slowest[0], slowest_seconds=round(slowest[1], 2))
        except Stop as stop:
            report.update(status=stop.status, why=stop.why, stopped_at=current)
        except Machinery as exc:
            report.update(status="machinery", why=str(exc), stopped_at=current)
        finally:
            if self.proc is not None and self.proc.poll() is not None and report["exit_status"] is None:
                report["exit_status"] = self.proc.returncode
            self.kill()
            if self.conn is not None:
                report["malformed_messages"] = self.conn.malformed
                self.conn.close()
            kills, peak = cgroup_memory(job["memory"])
            report["oom_kills"] = kills
            report["peak_memory_mb"] = round(peak / 2**20, 1) if peak else None
            report["truncated"] = self.outputs.truncated
            report["stderr_tail"] = self._tail_text(2000)
            report["timings"]["client"] = round(time.monotonic() - t0, 2)
        return report


def _payload(reply: dict | None):
    """The ``application/json`` an export request's reply carries, or None."""
    try:
        data = reply["user_expressions"]["labkit"]["data"]["application/json"]
    except (TypeError, KeyError):
        return None
    return data if type(data) is dict else None


def _die_with_parent() -> None:
    """This process dies with the grader (kill -9 included), and so its sandbox (bwrap --die-with-parent)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> int:
    _die_with_parent()
    job = json.loads(sys.stdin.read())
    if os.getppid() != job.get("parent_pid", os.getppid()):
        return 3  # the grader died before we could tie ourselves to it
    if job.get("faults", {}).get("crash_client"):
        raise RuntimeError("fault injected: the notebook client crashed")
    report = Run(job).run()
    sys.stdout.write(untrusted.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
