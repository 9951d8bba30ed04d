"""What can be checked here of the hub's deployment files: they load, and they agree with each
other and with the pins (the single machine, Zero to JupyterHub, Binder)."""
import importlib.util
import os
import sys
from pathlib import Path

import yaml
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import sync_pins  # noqa: E402


def load_config(path: Path, monkeypatch, **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def test_the_hub_config_loads_with_the_course_settings(monkeypatch, tmp_path):
    cfg = load_config(ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py", monkeypatch,
                      LABKIT_COURSE=str(tmp_path), LABKIT_HUB_PORT="8650", LABKIT_HUB_DEMO="1",
                      LABKIT_STUDENTS="ada,ben", LABKIT_MEM_LIMIT="3G")
    hub = cfg.JupyterHub
    assert (hub.ip, hub.port, hub.hub_port) == ("127.0.0.1", 8650, 8651)
    assert cfg.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:8652"
    assert hub.spawner_class == "labkit.hub.spawner.LabSpawner"
    assert hub.authenticator_class == "labkit.hub.auth.DemoAuthenticator"
    assert "DEMO ONLY" in hub.template_vars["announcement_login"]
    assert cfg.Authenticator.allowed_users == {"lkstu-ada", "lkstu-ben"}
    assert hub.db_url == f"sqlite:///{tmp_path}/hub/jupyterhub.sqlite"
    assert hub.cleanup_servers is False, "a restart keeps students' servers by default"
    assert cfg.Spawner.default_url == "/lab" and cfg.Spawner.mem_limit == "3G"
    assert cfg.Spawner.cmd[1:] == ["-m", "labkit.hub.singleuser"]
    assert cfg.Spawner.environment["JUPYTER_CONFIG_PATH"].endswith("deploy/jupyterhub/singleuser")
    culler = next(s for s in hub.services if s["name"] == "idle-culler")
    assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"] and "--timeout=3600" in culler["command"]
    role = next(r for r in hub.load_roles if r["name"] == "idle-culler")
    assert {"list:users", "read:users:activity", "read:servers", "delete:servers"} <= set(role["scopes"])
    for dotted in (hub.spawner_class, hub.authenticator_class):
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name)
    # without --demo: PAM, and the hub still makes the accounts through labkit.hub.accounts
    cfg = load_config(ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py", monkeypatch, LABKIT_HUB_DEMO="0")
    assert cfg.JupyterHub.authenticator_class == "pam" and cfg.LocalAuthenticator.create_system_users is True
    assert cfg.LocalAuthenticator.add_user_cmd[1:] == ["-m", "labkit.hub.accounts", "create"]


def test_each_students_server_culls_idle_kernels(monkeypatch):
    cfg = load_config(ROOT / "deploy" / "jupyterhub" / "singleuser" / "jupyter_server_config.py", monkeypatch,
                      LABKIT_KERNEL_IDLE_TIMEOUT="1200")
    mkm = cfg.MappingKernelManager
    assert (mkm.cull_idle_timeout, mkm.cull_interval, mkm.cull_connected, mkm.cull_busy) == (1200, 60, True, False)
    assert cfg.ServerApp.terminado_settings == {"shell_command": ["/bin/bash"]}


def test_zero_to_jupyterhub_values_agree_with_the_single_machine(monkeypatch):
    values = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "config.yaml").read_text())
    local = load_config(ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py", monkeypatch, LABKIT_HUB_DEMO="0")
    single = values["singleuser"]
    assert single["memory"]["limit"] == local.Spawner.mem_limit
    assert float(single["cpu"]["limit"]) == local.Spawner.cpu_limit
    assert single["defaultUrl"] == local.Spawner.default_url
    assert single["cmd"][1:] == ["-m", "labkit.hub.singleuser"] and importlib.util.find_spec("labkit.hub.singleuser")
    assert single["extraEnv"]["LABKIT_KERNEL_IDLE_TIMEOUT"] == local.Spawner.environment["LABKIT_KERNEL_IDLE_TIMEOUT"]
    assert single["extraEnv"]["JUPYTER_CONFIG_PATH"] == "/srv/lab/deploy/jupyterhub/singleuser"
    culler = next(s for s in local.JupyterHub.services if s["name"] == "idle-culler")["command"]
    assert f"--timeout={values['cull']['timeout']}" in culler and values["cull"]["users"] is False
    assert single["storage"]["type"] == "dynamic"
    mounts = {m["mountPath"]: m for m in single["storage"]["extraVolumeMounts"]}
    assert mounts["/srv/exchange/released"]["readOnly"] is True
    assert mounts["/srv/exchange/inbox/{username}"]["subPath"] == "inbox/{username}", "each pod sees only its own inbox"


def test_the_binder_image_has_the_hubs_jupyterhub():
    """Z2JH and mybinder.org start jupyterhub-singleuser from the image: it must be the same
    JupyterHub as the hub's. The pins test checks every other line."""
    pins = sync_pins.pins()
    binder = dict(line.split("==") for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert binder["jupyterhub"] == pins["jupyterhub"] and pins["jupyterhub"].startswith("6.")
    assert "jupyterlab-overrides.json" in (ROOT / "binder" / "postBuild").read_text()


def test_the_proxy_is_locked_and_installed_by_setup():
    lock = (ROOT / "deploy" / "jupyterhub" / "package-lock.json").read_text()
    assert '"node_modules/configurable-http-proxy"' in lock and '"integrity"' in lock
    assert "npm ci" in (ROOT / "tools" / "setup.sh").read_text()
    chp = Path(sys.prefix) / "hub-node" / "node_modules" / ".bin" / "configurable-http-proxy"
    assert chp.exists(), "make setup installs configurable-http-proxy into .venv/hub-node"
    assert os.access(chp, os.X_OK)
