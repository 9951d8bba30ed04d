"""`make lab` starts a real JupyterLab that serves the lab's notebooks, with ipywidgets' extension."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_widgets_extension_is_installed_for_jupyterlab():
    out = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True)
    listing = out.stdout + out.stderr
    assert "@jupyter-widgets/jupyterlab-manager" in listing and "enabled" in listing


@pytest.mark.slow
def test_make_lab_serves_jupyterlab_and_the_notebooks(tmp_path):
    port, token = free_port(), "labkit-test"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_ARGS=--no-browser --port={port} --IdentityProvider.token={token}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and status is None:
            try:
                status = json.load(urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2))
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.5)
        assert status is not None, "JupyterLab did not answer within 90 s"
        page = urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10).read().decode()
        assert "JupyterLab" in page
        listing = json.load(urllib.request.urlopen(f"{base}/api/contents/notebooks?token={token}", timeout=10))
        assert "00_welcome.ipynb" in {item["name"] for item in listing["content"]}
        kernels = json.load(urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=10))
        python3 = kernels["kernelspecs"]["python3"]["spec"]["argv"][0]
        assert Path(python3).parent == BIN, f"the python3 kernel runs {python3}, not the lab's .venv"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
