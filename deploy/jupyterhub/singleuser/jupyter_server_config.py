# Each student's Jupyter server on the course hub reads this file (the hub puts this folder on
# JUPYTER_CONFIG_PATH). Values come from the hub's environment (deploy/jupyterhub/jupyterhub_config.py).
import os

c = get_config()  # noqa: F821 -- provided by Jupyter when it loads this file

# Idle kernels are culled: a closed tab no longer keeps a kernel (~800 MB with TensorFlow) alive.
idle = int(os.environ.get("LABKIT_KERNEL_IDLE_TIMEOUT", "1200"))
every = max(1, min(60, idle // 2))
c.MappingKernelManager.cull_idle_timeout = idle
c.MappingKernelManager.cull_interval = every
c.MappingKernelManager.cull_connected = True   # an open but forgotten tab doesn't pin a kernel
c.MappingKernelManager.cull_busy = False       # a kernel that is still computing is never culled
c.TerminalManager.cull_inactive_timeout = idle
c.TerminalManager.cull_interval = every

# Terminals run an interactive, non-login bash: a login shell would reset PATH (/etc/profile) and
# lose the lab's .venv, where `labkit fetch` and `labkit submit` live.
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash"]}

# The language-server extension looks for a dozen servers the lab doesn't ship, at every start.
c.ServerApp.jpserver_extensions = {"jupyter_lsp": False}
