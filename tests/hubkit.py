"""Helpers for the course-hub tests: a real hub on a loopback port, logins, kernels, Chromium.

Everything here drives real parts: ``labkit hub serve`` (JupyterHub, configurable-http-proxy, real
Unix accounts), the Jupyter REST and websocket APIs, and Debian's Chromium through Playwright.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PREFIX = "lkstu-"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the course hub creates Unix accounts and switches "
                                "users: it needs root (CI runs as root)")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def hub_port() -> int:
    """A base port in 8610-8697 whose next two ports are free too (proxy, hub API, proxy API)."""
    start = 8610 + (os.getpid() % 30) * 3
    for base in list(range(start, 8698, 3)) + list(range(8610, start, 3)):
        if all(_free(base + i) for i in range(3)):
            return base
    raise RuntimeError("no free ports in 8610-8699")


def student_processes(unix_names) -> list[psutil.Process]:
    uids = {e.pw_uid for e in (_pw(n) for n in unix_names) if e}
    found = []
    for p in psutil.process_iter(["uids"]):
        try:
            if p.info["uids"] and p.info["uids"].real in uids:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _pw(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


class Hub:
    """``labkit hub serve`` on a loopback port, with a course in ``course`` (a fresh folder)."""

    def __init__(self, course: Path, students: list[str], log: Path, env: dict | None = None, keep_servers=True):
        self.course, self.students, self.log_path = Path(course), list(students), Path(log)
        self.port = hub_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.keep_servers = keep_servers
        self.proc: subprocess.Popen | None = None
        self.unix = [PREFIX + s for s in self.students]

    # --- life cycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 90) -> "Hub":
        argv = [PY, "-m", "labkit", "hub", "serve", "--demo", "--course", str(self.course), "--port", str(self.port),
                "--students", *self.students, "--keep-servers" if self.keep_servers else "--stop-servers"]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the hub did not answer within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, as a service manager would; the hub ends the proxy and its services itself."""
        if self.proc is None:
            return
        children = []
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        ours = [c for c in children if c.is_running() and c.username() == "root"]  # proxy, culler
        for c in ours:
            c.kill()
        self.proc = None
        self._log.close()

    @property
    def passwords(self) -> dict:
        return json.loads((self.course / "hub" / "demo-passwords.json").read_text())

    @property
    def token(self) -> str:
        return (self.course / "hub" / "admin-token").read_text().strip()

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {self.token}"},
                                timeout=30, **kw)

    def server_running(self, unix: str) -> bool:
        r = self.api("GET", f"/users/{unix}")
        return r.ok and bool(r.json().get("servers", {}).get("", {}).get("ready"))

    def stop_servers(self, timeout: float = 60) -> None:
        for u in self.unix:
            r = self.api("DELETE", f"/users/{u}/server")
            if r.status_code not in (202, 204, 400, 404):
                raise RuntimeError(f"stopping {u}'s server: {r.status_code} {r.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self.api("GET", f"/users/{u}").json().get("servers") for u in self.unix):
            reap_zombies(0)  # a server from before a hub restart is our child now: reap it so the hub sees it end
            time.sleep(0.5)

    def teardown(self) -> dict:
        """Stop everything, delete the accounts and the course; return what was left behind before
        the last-resort cleanup (the test asserts it is nothing)."""
        left = {}
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop_servers()
            except (requests.RequestException, RuntimeError, ValueError):
                pass
            self.stop()
        reap_zombies()
        left["processes"] = [f"{p.pid} {p.username()} {' '.join(p.cmdline()[:3])}" for p in student_processes(self.unix)]
        remove_students(self.course, self.students)
        left["accounts"] = [u for u in self.unix if _pw(u)]
        shutil.rmtree(self.course, ignore_errors=True)
        return left


def reap_zombies(grace: float = 5.0) -> None:
    """Wait for our children that have exited. A student's server that outlived a hub restart is
    re-parented to pytest (the suite makes it a child subreaper): when it ends, we reap it."""
    deadline = time.monotonic() + grace
    while True:
        zombies = [p for p in psutil.Process().children() if _status(p) == psutil.STATUS_ZOMBIE]
        for p in zombies:
            try:
                os.waitpid(p.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not zombies or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _status(p):
    try:
        return p.status()
    except psutil.Error:
        return None


def remove_students(course: Path, students) -> None:
    """Delete the test students' accounts, homes, inboxes and processes (also left-overs of an earlier run)."""
    subprocess.run([PY, "-m", "labkit", "hub", "remove-students", "--course", str(course), *students],
                   cwd=ROOT, capture_output=True)
    for s in students:  # no course.json yet (a crashed earlier run): remove the accounts directly
        if _pw(PREFIX + s):
            from labkit.hub import accounts
            accounts.remove(PREFIX + s, PREFIX)


def fresh_course(_tmp_path: Path, students) -> Path:
    """A course folder students can reach (under /tmp, mode 0711), with no left-over accounts."""
    course = Path("/tmp") / f"labkit-hubtest-{uuid.uuid4().hex[:8]}"
    for s in students:
        if _pw(PREFIX + s):
            from labkit.hub import accounts
            accounts.remove(PREFIX + s, PREFIX)
    return course


def login(hub: Hub, student: str, timeout: float = 120) -> requests.Session:
    """Log ``student`` in with their demo password, start their server, and return the session."""
    s = requests.Session()
    s.get(f"{hub.url}/hub/login", timeout=10)
    xsrf = s.cookies.get("_xsrf", path="/hub/")
    r = s.post(f"{hub.url}/hub/login", data={"username": student, "password": hub.passwords[student], "_xsrf": xsrf},
               timeout=60)
    r.raise_for_status()
    unix = PREFIX + student
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = s.get(f"{hub.url}/user/{unix}/lab", timeout=30)
        if r.ok and "/user/" in r.url and "JupyterLab" in r.text:
            return s
        time.sleep(1)
    raise RuntimeError(f"{student}'s server did not start:\n{hub.log()[-3000:]}")


def user_api(hub: Hub, unix: str, method: str, path: str, **kw) -> requests.Response:
    """The Jupyter server API of ``unix``'s server, with the instructor's token (access:servers)."""
    return requests.request(method, f"{hub.url}/user/{unix}/api{path}", headers={"Authorization": f"token {hub.token}"},
                            timeout=60, **kw)


def execute(hub: Hub, unix: str, kernel_id: str, code: str, timeout: float = 60) -> dict:
    """Run ``code`` in a kernel over the Jupyter websocket; ``{stdout, error, status}``."""
    import asyncio

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async def run():
        url = f"ws://127.0.0.1:{hub.port}/user/{unix}/api/kernels/{kernel_id}/channels"
        ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {hub.token}"}))
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        out = {"stdout": "", "error": None, "status": None}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.read_message(), timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                out["error"] = f"no reply within {timeout} s"
                break
            if raw is None:
                out["error"] = "websocket closed (kernel died?)"
                break
            msg = json.loads(raw)
            if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] in ("restarting", "dead"):
                out["error"] = f"the kernel is {msg['content']['execution_state']} (it died)"
                break
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out["stdout"] += msg["content"]["text"]
            elif kind == "error":
                out["error"] = f"{msg['content']['ename']}: {msg['content']['evalue']}"
            elif kind == "execute_reply":
                out["status"] = msg["content"]["status"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle" and out["status"]:
                break
        ws.close()
        return out

    return asyncio.run(run())


def launch_chromium(playwright):
    """Debian's Chromium, headless; Playwright gives every launch a fresh temporary profile
    (it refuses a --user-data-dir argument: each context below is a fresh, isolated profile)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
