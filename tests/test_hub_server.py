"""The course hub as a server, without a browser: limits, culling, and a restart with nothing lost.

A real ``labkit hub serve`` (JupyterHub + configurable-http-proxy) on a loopback port, real
student accounts, and kernels driven over the Jupyter REST/websocket API.
"""
import json
import time
from pathlib import Path

import pytest
import requests

from hubkit import PREFIX, Hub, execute, fresh_course, login, needs_root, student_processes, user_api
from labkit.hub import limits

pytestmark = [needs_root, pytest.mark.slow]


def start_kernel(hub, unix):
    r = user_api(hub, unix, "POST", "/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@pytest.fixture
def hub_factory(tmp_path):
    made = []

    def make(students, **env):
        course = fresh_course(tmp_path, students)
        hub = Hub(course, students, log=tmp_path / f"hub{len(made)}.log", env={k: str(v) for k, v in env.items()})
        made.append(hub)
        return hub

    yield make
    for hub in made:
        left = hub.teardown()
        assert left == {"processes": [], "accounts": []}, left


def test_a_hub_restart_loses_nothing(hub_factory):
    """Users, a logged-in browser session, files, submissions and even a running kernel's state
    survive a restart of the hub (servers keep running; the new hub finds them again)."""
    hub = hub_factory(["dee"]).start()
    unix = PREFIX + "dee"
    session = login(hub, "dee")
    kernel = start_kernel(hub, unix)
    assert execute(hub, unix, kernel, "answer = 6 * 7")["status"] == "ok"
    r = user_api(hub, unix, "PUT", "/contents/notes.txt", json={"type": "file", "format": "text", "content": "mine"})
    assert r.status_code in (200, 201), r.text
    db = hub.course / "hub" / "jupyterhub.sqlite"
    server = {p.pid for p in student_processes([unix]) if "jupyterhub-singleuser" in " ".join(p.cmdline())}
    assert server

    hub.stop()
    assert db.exists() and student_processes([unix]), "the student's server keeps running while the hub is down"
    hub.start()

    assert hub.server_running(unix), hub.log()[-2000:]
    r = session.get(f"{hub.url}/user/{unix}/api/contents/notes.txt", timeout=30)  # the same browser cookie
    assert r.status_code == 200 and r.json()["content"] == "mine"
    assert execute(hub, unix, kernel, "print(answer)")["stdout"].strip() == "42"
    assert server <= {p.pid for p in student_processes([unix])}, "the very same server process"
    assert (Path(f"/home/{unix}/lab") / "20_convolution.ipynb").exists()


def test_idle_kernels_and_idle_servers_are_culled(hub_factory):
    hub = hub_factory(["eve"], LABKIT_KERNEL_IDLE_TIMEOUT=3, LABKIT_SERVER_IDLE_TIMEOUT=45).start()
    unix = PREFIX + "eve"
    login(hub, "eve")
    kernel = start_kernel(hub, unix)
    assert execute(hub, unix, kernel, "x = 1")["status"] == "ok"
    # no client is connected any more (the tab is closed): the server's own culler ends the kernel
    wait_for(lambda: kernel not in {k["id"] for k in user_api(hub, unix, "GET", "/kernels").json()}, 60,
             "culling the idle kernel")
    assert "Culling kernel" in hub.log() or "culled" in hub.log().lower()
    # then, with no activity at all, the hub's idle-culler service stops the whole server
    wait_for(lambda: not hub.server_running(unix), 180, "culling the idle server")
    wait_for(lambda: not student_processes([unix]), 30, "the student's processes ending")


def test_memory_limit_ends_the_greedy_kernel_not_the_server(hub_factory):
    hub = hub_factory(["fay"], LABKIT_MEM_LIMIT="700M").start()
    unix = PREFIX + "fay"
    login(hub, "fay")
    kernel = start_kernel(hub, unix)
    pid = int(execute(hub, unix, kernel, "import os; print(os.getpid())")["stdout"])
    usage = limits.usage(pid)
    assert usage.get("memory_limit_bytes") == 700 * 2**20, usage
    result = execute(hub, unix, kernel, "hog = b'x' * (900 * 2**20)", timeout=60)
    assert result["status"] != "ok", result
    assert limits.usage(student_processes([unix])[0].pid).get("oom_kills", 0) >= 1
    assert hub.server_running(unix), "the server survives; only the kernel was killed"
    assert user_api(hub, unix, "GET", "/status").status_code == 200


def test_make_hub_starts_a_demo_hub(tmp_path):
    """`make hub` as the README says: a demo hub on loopback, labelled demo-only, passwords printed."""
    import os
    import signal
    import subprocess

    from hubkit import ROOT, hub_port, remove_students

    course, port = fresh_course(tmp_path, ["gus"]), hub_port()
    log = tmp_path / "make-hub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["make", "-s", "hub", "HUB_STUDENTS=gus", f"HUB_ARGS=--course {course} --port {port}"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _up(port, proc, log), 120, "the hub answering")
        page = requests.get(f"http://127.0.0.1:{port}/hub/login", timeout=10).text
        assert "DEMO ONLY" in page
        text = log.read_text()
        password = json.loads((course / "hub" / "demo-passwords.json").read_text())["gus"]
        assert "student gus" in text and password in text and f"http://127.0.0.1:{port}/" in text
        assert oct((course / "hub" / "demo-passwords.json").stat().st_mode & 0o777) == "0o600"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        remove_students(course, ["gus"])
        import shutil
        shutil.rmtree(course, ignore_errors=True)
    assert not student_processes([PREFIX + "gus"])


def _up(port, proc, log) -> bool:
    import requests

    if proc.poll() is not None:
        raise AssertionError(f"make hub exited:\n{log.read_text()[-3000:]}")
    try:
        return requests.get(f"http://127.0.0.1:{port}/hub/api/", timeout=2).ok
    except requests.RequestException:
        return False
