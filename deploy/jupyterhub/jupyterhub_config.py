# The course hub on one machine: JupyterHub + configurable-http-proxy, one Unix account per
# student, JupyterLab from the lab's .venv, enforced per-student limits, and idle culling.
#
# Started by `labkit hub serve` (`make hub`), which sets the LABKIT_* variables below, prepares
# the course folder and, when needed, a private mount namespace (labkit/hub/reach.py). By hand:
#     LABKIT_COURSE=/srv/labkit .venv/bin/jupyterhub -f deploy/jupyterhub/jupyterhub_config.py
# Every value here is read from the environment with the default shown; deploy/README.md explains
# each choice and how it maps onto Zero to JupyterHub on Kubernetes.
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 -- provided by JupyterHub when it loads this file

LAB = Path(os.environ.get("LABKIT_LAB", Path(__file__).resolve().parents[2]))
VENV = Path(sys.prefix)  # the hub runs from the lab's .venv; so do the students' servers and kernels
COURSE = Path(os.environ.get("LABKIT_COURSE", "/srv/labkit"))
STATE = COURSE / "hub"
IP = os.environ.get("LABKIT_HUB_IP", "127.0.0.1")
PORT = int(os.environ.get("LABKIT_HUB_PORT", "8600"))
DEMO = os.environ.get("LABKIT_HUB_DEMO", "0") == "1"
PREFIX = os.environ.get("LABKIT_STUDENT_PREFIX", "lkstu-")
STUDENTS = [s for s in os.environ.get("LABKIT_STUDENTS", "").split(",") if s]

# --- network: the public proxy on PORT, the hub's API and the proxy's API next to it ----------
c.JupyterHub.ip = IP
c.JupyterHub.port = PORT
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = PORT + 1
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 2}"
c.ConfigurableHTTPProxy.command = [os.environ.get("LABKIT_CHP", str(VENV / "hub-node" / "node_modules" / ".bin" / "configurable-http-proxy"))]
c.ConfigurableHTTPProxy.debug = False

# --- state that must survive a restart: users, tokens, cookie secret -------------------------
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
# Keep students' servers (and their kernels' state) running while the hub restarts or upgrades.
c.JupyterHub.cleanup_servers = os.environ.get("LABKIT_HUB_KEEP_SERVERS", "1") != "1"
c.JupyterHub.cleanup_proxy = True

# --- who may log in ------------------------------------------------------------------------
if DEMO:
    from labkit.hub.auth import DEMO_BANNER

    c.JupyterHub.authenticator_class = "labkit.hub.auth.DemoAuthenticator"
    c.DemoAuthenticator.passwords_file = str(STATE / "demo-passwords.json")
    c.DemoAuthenticator.student_prefix = PREFIX
    c.JupyterHub.template_vars = {"announcement_login": DEMO_BANNER, "announcement": DEMO_BANNER}
else:  # the students' Unix passwords; see deploy/README.md for OAuth and LTI
    c.JupyterHub.authenticator_class = "pam"
    c.LocalAuthenticator.create_system_users = True
c.LocalAuthenticator.add_user_cmd = [sys.executable, "-m", "labkit.hub.accounts", "create"]
c.Authenticator.allowed_users = {PREFIX + s for s in STUDENTS}
c.Authenticator.admin_users = set()  # the instructor works as root on the machine, with labkit verbs

# --- each student's server: their account, the lab's .venv, JupyterLab, limits ----------------
c.JupyterHub.spawner_class = "labkit.hub.spawner.LabSpawner"
c.LabSpawner.course_root = str(COURSE)
c.Spawner.cmd = [sys.executable, "-m", "labkit.hub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.environment = {
    "PATH": f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
    "LABKIT_LAB": str(LAB),
    "LABKIT_EXCHANGE": str(COURSE / "exchange"),
    "JUPYTER_CONFIG_PATH": str(LAB / "deploy" / "jupyterhub" / "singleuser"),
}
c.Spawner.mem_limit = os.environ.get("LABKIT_MEM_LIMIT", "4G")
c.Spawner.cpu_limit = float(os.environ.get("LABKIT_CPU_LIMIT", "2"))  # shares split the cores evenly under contention
c.LabSpawner.max_pids = int(os.environ.get("LABKIT_MAX_PIDS", "1024"))
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
c.LocalProcessSpawner.interrupt_timeout = 10
c.LocalProcessSpawner.term_timeout = 10

# Idle kernels (and terminals) are culled inside each server; see singleuser/jupyter_server_config.py.
c.Spawner.environment["LABKIT_KERNEL_IDLE_TIMEOUT"] = os.environ.get("LABKIT_KERNEL_IDLE_TIMEOUT", "1200")

# --- idle servers are stopped by the hub's culler service ------------------------------------
SERVER_IDLE = int(os.environ.get("LABKIT_SERVER_IDLE_TIMEOUT", "3600"))
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={SERVER_IDLE}",
                f"--cull-every={max(1, min(300, SERVER_IDLE // 2))}"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
# A token for the instructor's tools and the tests (labkit hub status/stop); root-only file.
_admin_token = STATE / "admin-token"
if _admin_token.exists():
    c.JupyterHub.services.append({"name": "labkit-admin", "api_token": _admin_token.read_text().strip()})
    c.JupyterHub.load_roles.append({"name": "labkit-admin", "services": ["labkit-admin"],
                                    "scopes": ["admin:users", "admin:servers", "list:users", "read:users",
                                               "read:servers", "delete:servers", "access:servers"]})
